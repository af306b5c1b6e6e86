package worker

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// metricsReader samples the OS for heartbeats. CPU use is measured between two samples, so it
// keeps the previous counters.
type metricsReader struct {
	dir            string
	lastIdle, last uint64
}

func (m *metricsReader) sample() protocol.Metrics {
	var out protocol.Metrics
	out.CPUFree = m.cpuFree()
	total, avail, swapTotal, swapFree := memInfo()
	if total > 0 {
		out.MemFree = 100 * float64(avail) / float64(total)
	}
	if swapTotal > 0 {
		out.SwapUsed = 100 * float64(swapTotal-swapFree) / float64(swapTotal)
	}
	out.DiskFree = diskFree(m.dir)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			out.Load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return out
}

// diskFree is the percentage of the file system holding dir that an unprivileged user may still
// fill. The working directory is made when the first job runs, so until then the file system is
// that of its nearest existing parent (statfs of the missing folder failed, and every heartbeat
// reported 0 % free).
func diskFree(dir string) float64 {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			if st.Blocks == 0 {
				return 0
			}
			return 100 * float64(st.Bavail) / float64(st.Blocks)
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, syscall.ENOENT) || parent == dir {
			return 0
		}
		dir = parent
	}
}

// cpuFree is the percentage of CPU time idle since the previous sample (100 on the first).
func (m *metricsReader) cpuFree() float64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 100
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 100
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 100
	}
	var total, idle uint64
	for i, s := range fields[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	dt, di := total-m.last, idle-m.lastIdle
	first := m.last == 0
	m.last, m.lastIdle = total, idle
	if first || dt == 0 {
		return 100
	}
	return 100 * float64(di) / float64(dt)
}

func memInfo() (total, avail, swapTotal, swapFree uint64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		case "SwapTotal:":
			swapTotal = v
		case "SwapFree:":
			swapFree = v
		}
	}
	return
}

// noProcess is the pid of an executable job whose program has not started: no usage to report.
const noProcess = -1

// jobUsage samples a job's CPU time and resident memory from /proc (Linux; none elsewhere): an
// executable's from its program's process (/proc/PID/stat and statm), a Go job's from the
// worker's own process, which its Go jobs share. The last sample is kept once the program has
// exited, so the counters a heartbeat reports never go back.
type jobUsage struct {
	pid atomic.Int64 // 0: the worker's own process; noProcess: not started yet

	mu  sync.Mutex // guards the last sample
	cpu float64
	mem uint64
}

func (u *jobUsage) setPid(pid int) { u.pid.Store(int64(pid)) }

// sample returns the CPU seconds used and the resident bytes now, or the last sample when the
// process is gone.
func (u *jobUsage) sample() (float64, uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	pid := u.pid.Load()
	if pid == noProcess {
		return u.cpu, u.mem
	}
	proc := "/proc/self"
	if pid > 0 {
		proc = "/proc/" + strconv.FormatInt(pid, 10)
	}
	if cpu, mem, ok := procUsage(proc); ok {
		u.cpu, u.mem = cpu, mem
	}
	return u.cpu, u.mem
}

// clockTicks is the unit of /proc/PID/stat's times (USER_HZ), 100 on every Linux port Go runs on.
const clockTicks = 100

// procUsage reads a process's user+system CPU seconds (stat fields 14 and 15) and its resident
// bytes (statm's second field, in pages).
func procUsage(proc string) (cpu float64, mem uint64, ok bool) {
	stat, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from its end.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, 0, false
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	statm, err := os.ReadFile(proc + "/statm")
	if err != nil {
		return 0, 0, false
	}
	g := strings.Fields(string(statm))
	if len(g) < 2 {
		return 0, 0, false
	}
	pages, err := strconv.ParseUint(g[1], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return float64(utime+stime) / clockTicks, pages * uint64(os.Getpagesize()), true
}
