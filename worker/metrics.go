package worker

import (
	"bufio"
	"os"
	"strconv"
	"strings"
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
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.dir, &st); err == nil && st.Blocks > 0 {
		out.DiskFree = 100 * float64(st.Bavail) / float64(st.Blocks)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			out.Load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return out
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
