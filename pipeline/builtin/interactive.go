package builtin

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/marvelo/marvelo/pipeline/job"
)

// Interactive is a source of the lines typed into `marvelo run` or `marvelo submit --follow`
// (InteractiveJob): each non-empty line, without its newline, is one block. Empty lines are
// skipped (the original ended the job on one); the end of the input ends the stream.
type Interactive struct{}

// Generate emits the lines.
func (Interactive) Generate(ctx *job.Context, emit func(any) error) error {
	sc := bufio.NewScanner(ctx.In)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		if err := emit(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Context().Err() == nil {
		return fmt.Errorf("reading input: %w", err)
	}
	return nil
}

// LoggingSink writes the rows of jobs run with `log: true` to a CSV file (LoggingSinkJob): a
// header job,pid,state,cpu_percent,memory_percent,time in,time out, then one row per input per
// compute block.
type LoggingSink struct {
	Path string `json:"path" marvelo:"required" help:"the CSV file, relative to the job's working directory"`

	csv CSVSink
}

// LoggingHeader is the header of a logging sink's file.
var LoggingHeader = []string{"job", "pid", "state", "cpu_percent", "memory_percent", "time in", "time out"}

// Setup creates the file and writes the header, or reopens the file of a previous instance at
// its checkpoint (as csv_sink does).
func (l *LoggingSink) Setup(ctx *job.Context) error {
	l.csv.Path = l.Path
	resumed, err := l.csv.open(ctx)
	if err != nil || resumed {
		return err
	}
	return l.csv.write(LoggingHeader)
}

// Checkpoint is the file's length after the rows written so far.
func (l *LoggingSink) Checkpoint() ([]byte, error) { return l.csv.Checkpoint() }

// Restore keeps a previous instance's checkpoint for Setup.
func (l *LoggingSink) Restore(state []byte) error { return l.csv.Restore(state) }

// Run writes one row per input; each input value is one logging row (a list).
func (l *LoggingSink) Run(_ *job.Context, in ...any) error {
	for k, v := range in {
		row, ok := v.([]any)
		if !ok {
			return fmt.Errorf("input %d: a logging row is a list, got %T", k+1, v)
		}
		cells := make([]string, len(row))
		for i, c := range row {
			cell, err := csvCell(c)
			if err != nil {
				return err
			}
			cells[i] = cell
		}
		if err := l.csv.write(cells); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file.
func (l *LoggingSink) Close() error { return l.csv.Close() }

// LogRow is one LoggingJob row: the job's name, the worker's pid, the step counter, the
// process's CPU use (percent of all CPUs) and memory use (percent of RAM) since the last row,
// and the step's start and end as Unix times in seconds.
type LogRow struct {
	lastCPU  time.Duration
	lastWall time.Time
}

// Row measures one step.
func (r *LogRow) Row(name string, step uint64, in, out time.Time) []any {
	cpu := processCPU()
	cpuPct := 0.0
	if !r.lastWall.IsZero() {
		if wall := out.Sub(r.lastWall); wall > 0 {
			cpuPct = 100 * float64(cpu-r.lastCPU) / float64(wall) / float64(runtime.NumCPU())
		}
	}
	r.lastCPU, r.lastWall = cpu, out
	return []any{name, int64(os.Getpid()), int64(step), round2(cpuPct), round2(memoryPercent()),
		float64(in.UnixNano()) / 1e9, float64(out.UnixNano()) / 1e9}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// processCPU is the CPU time this process has used, from /proc/self/stat (0 where unreadable).
func processCPU() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	// The command name may hold spaces; fields count from after its closing parenthesis.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// memoryPercent is this process's resident memory as a percentage of RAM.
func memoryPercent() float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	mem, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	rss, total := kbField(string(status), "VmRSS:"), kbField(string(mem), "MemTotal:")
	if total == 0 {
		return 0
	}
	return 100 * float64(rss) / float64(total)
}

func kbField(text, key string) int64 {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line[len(key):])
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}
