// Package exectest runs an executable job for its unit tests through the real adapter
// (worker/execjob): the program is started exactly as a worker starts it (command line, named
// pipes or inherited descriptors, framing, heads, environment), fed the blocks given per input
// and read on every output. No NATS, no broker.
//
//	func TestScalePy(t *testing.T) {
//		h := exectest.New(t, pipeline.Exec{Path: "./scale.py", Params: []string{"--factor", "2"}},
//			jobtest.Config{InputPipes: []jobtest.Pipe{{Codec: "json"}}, OutputPipes: []jobtest.Pipe{{Codec: "json"}}})
//		res := h.Feed(0, 1, 2.5).Run()
//		// res.Values(0) is [2, 5]
//	}
//
// Feeding follows package jobtest (block_count, dummies for jobtest.Missing, optional inputs'
// defaults): the program receives what the runtime's alignment would give it. Outputs are read
// until the program closes them; the run ends when the program exits.
package exectest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/jobtest"
	"github.com/marvelo/marvelo/worker/execjob"
)

// Timeout bounds one Run: a program that neither ends nor reads its inputs fails the test
// instead of hanging it.
var Timeout = 2 * time.Minute

// Harness runs one executable job. Make it with New, Feed its inputs, then Run.
type Harness struct {
	t    testing.TB
	exec pipeline.Exec
	cfg  jobtest.Config
	// Head makes every block on every stream carry its head bytes (the job's "head": true).
	Head bool
	// Env holds extra KEY=value entries for the program's environment.
	Env   []string
	feeds *jobtest.Harness
}

// New prepares the executable exec with the pipes of cfg (cfg.Inputs/Outputs or InputPipes/
// OutputPipes, HeadSize, Dummy, Name, JobID, WorkDir). A relative exec.Path is taken relative to
// the test's current folder (the package's folder under go test).
func New(t testing.TB, exec pipeline.Exec, cfg jobtest.Config) *Harness {
	t.Helper()
	if exec.Path != "" && !filepath.IsAbs(exec.Path) && strings.Contains(exec.Path, "/") {
		abs, err := filepath.Abs(exec.Path)
		if err != nil {
			t.Fatalf("exectest: %v", err)
		}
		exec.Path = abs
	}
	return &Harness{t: t, exec: exec, cfg: cfg, feeds: jobtest.New(t, nil, cfg)}
}

// Feed appends values to input k, as jobtest.Harness.Feed does.
func (h *Harness) Feed(k int, values ...any) *Harness {
	h.t.Helper()
	h.feeds.Feed(k, values...)
	return h
}

// Result is what the program wrote; Output holds its stdout and stderr lines.
type Result = jobtest.Result

// Run starts the program, feeds every compute block, ends its inputs and waits for it to exit.
// A failure (exit status, malformed output, timeout) fails the test; use RunErr to test it.
func (h *Harness) Run() *Result {
	h.t.Helper()
	r := h.RunErr()
	if r.Err != nil {
		h.t.Fatalf("exectest: %v\n%s", r.Err, r.Output)
	}
	return r
}

// RunErr is Run that reports the failure in Result.Err.
func (h *Harness) RunErr() *Result {
	h.t.Helper()
	headSize := max(h.cfg.HeadSize, 1)
	ins, err := ports(h.feeds.Inputs())
	if err != nil {
		h.t.Fatalf("exectest: %v", err)
	}
	outs, err := ports(h.feeds.Outputs())
	if err != nil {
		h.t.Fatalf("exectest: %v", err)
	}
	wd := h.cfg.WorkDir
	if wd == "" {
		wd = h.t.TempDir()
	}
	id := h.cfg.JobID
	if id == 0 {
		id = 1
	}
	spec := execjob.Spec{Pipeline: "exectest", JobID: id, Name: h.cfg.Name, Worker: "exectest", WorkDir: wd,
		Exec: h.exec, Inputs: ins, Outputs: outs, Head: h.Head, HeadSize: headSize, Env: h.Env}
	res := &Result{Outputs: make([][]jobtest.Block, len(outs)), HeadSize: headSize}
	var logMu sync.Mutex
	var lines []string
	logLine := func(stream, line string) {
		logMu.Lock()
		defer logMu.Unlock()
		lines = append(lines, stream+": "+line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	p, err := execjob.Start(ctx, spec, logLine)
	if err != nil {
		res.Err = err
		return res
	}
	var wg sync.WaitGroup
	readErrs := make([]error, len(outs))
	for k := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readErrs[k] = readOutput(p, k, outs[k], res)
		}()
	}
	rounds := h.feeds.Rounds()
	var feedErr error
	for {
		in, heads, ok, err := rounds.Next()
		if err != nil {
			feedErr = err
			break
		}
		if !ok {
			break
		}
		if err := p.WriteRound(ctx, in, heads); err != nil {
			if !errors.Is(err, execjob.ErrInputClosed) {
				feedErr = err
			}
			break
		}
		res.Rounds++
	}
	if err := p.CloseInputs(); err != nil && feedErr == nil && !errors.Is(err, execjob.ErrInputClosed) {
		feedErr = err
	}
	if feedErr != nil {
		p.Stop(execjob.DefaultGrace)
	}
	wg.Wait()
	werr := p.Wait()
	res.Err = errors.Join(append([]error{feedErr, werr}, readErrs...)...)
	if ctx.Err() != nil {
		res.Err = errors.Join(fmt.Errorf("%s did not end within %s", spec.Label(), Timeout), res.Err)
	}
	for _, bs := range res.Outputs {
		for _, b := range bs {
			res.Finished = res.Finished || pipeline.NewHead(b.Head, headSize).Finished()
		}
	}
	logMu.Lock()
	res.Output = strings.Join(lines, "\n")
	logMu.Unlock()
	return res
}

func readOutput(p *execjob.Process, k int, port job.Port, res *Result) error {
	var buf []byte
	for {
		payload, head, err := p.ReadOutput(k, buf[:0])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := port.Codec.DecodeAny(payload)
		if err != nil {
			return fmt.Errorf("output %d (pipe %d): %w", k+1, port.Pipe, err)
		}
		// Each goroutine appends only to its own output's slice.
		res.Outputs[k] = append(res.Outputs[k], jobtest.Block{Value: v, Head: head})
		buf = payload
	}
}

func ports(ps []jobtest.Pipe) ([]job.Port, error) {
	out := make([]job.Port, len(ps))
	for k, p := range ps {
		c, err := codec.New(p.Codec, p.BlockSize)
		if err != nil {
			return nil, fmt.Errorf("pipe %d: %w", p.ID, err)
		}
		out[k] = job.Port{Pipe: p.ID, Codec: c, BlockCount: p.BlockCount}
	}
	return out, nil
}

// Copy copies files (the program and what it needs) into dir, keeping their mode: a test can
// give the program a working directory as a worker's unpacked dependencies would be.
func Copy(t testing.TB, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("exectest: %v", err)
		}
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatalf("exectest: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, fi.Mode().Perm()); err != nil {
			t.Fatalf("exectest: %v", err)
		}
	}
}
