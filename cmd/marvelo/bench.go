package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/internal/local"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure throughput of a source → forwards → sink pipeline on an embedded broker",
		Description: `Runs the standard throughput scenario through exactly the machinery of marvelo run (embedded
NATS with JetStream in memory, broker, worker, real NATS connections): a source of --count
blocks → --stages forward jobs → a discard sink. With --size 0 the blocks are small integers
(cbor); otherwise they are --size byte blocks on bytes pipes. Prints blocks/s and MB/s.

Example:
   marvelo bench
   marvelo bench --stages 2 --size 1024 --count 200000`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "stages", Value: 1, Usage: "forward jobs between source and sink"},
			&cli.IntFlag{Name: "size", Value: 0, Usage: "block size in bytes (0: small cbor integers)"},
			&cli.IntFlag{Name: "count", Value: 1_000_000, Usage: "blocks the source emits"},
			&cli.IntFlag{Name: "runs", Value: 3, Usage: "repetitions; the median is reported"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the runs to this file (go tool pprof)"},
		},
		Action: benchAction,
	}
}

// benchResult is one bench figure.
type benchResult struct {
	Scenario     string  `json:"scenario"`
	Stages       int     `json:"stages"`
	Size         int     `json:"size"`
	Count        int     `json:"count"`
	Seconds      float64 `json:"seconds"`
	BlocksPerSec float64 `json:"blocks_per_s"`
	MBPerSec     float64 `json:"mb_per_s"`
	CPUs         int     `json:"cpus"`
}

func benchAction(c *cli.Context) error {
	stages, size, count, runs := c.Int("stages"), c.Int("size"), c.Int("count"), c.Int("runs")
	if stages < 0 || size < 0 || count < 1 || runs < 1 {
		return cliutil.UsageError(fmt.Errorf("bench: --stages and --size must be ≥ 0, --count and --runs ≥ 1"))
	}
	doc, err := benchPipeline(stages, size, count)
	if err != nil {
		return cliutil.Failure(err)
	}
	reg := builtin.Registry()
	reg.Register("bench_source", "emits count blocks of size bytes", func() any { return &benchSource{} })
	env, err := local.Start(local.Options{Registry: reg, WorkDir: os.TempDir()})
	if err != nil {
		return cliutil.Failure(err)
	}
	defer env.Close()
	if path := c.String("cpuprofile"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return cliutil.Failure(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return cliutil.Failure(err)
		}
		defer pprof.StopCPUProfile()
	}
	var secs []float64
	for i := 0; i < runs; i++ {
		start := time.Now()
		if _, err := env.RunPipeline(c.Context, "bench", doc, local.Options{}); err != nil {
			return cliutil.Failure(fmt.Errorf("bench run %d: %w", i+1, err))
		}
		secs = append(secs, time.Since(start).Seconds())
		if !c.Bool("json") {
			fmt.Fprintf(os.Stderr, "run %d/%d: %.0f blocks/s\n", i+1, runs, float64(count)/secs[i])
		}
	}
	med := median(secs)
	res := benchResult{Scenario: "linear", Stages: stages, Size: size, Count: count, Seconds: med,
		BlocksPerSec: float64(count) / med, CPUs: runtime.NumCPU()}
	payload := size
	if payload == 0 {
		payload = 8
	}
	res.MBPerSec = res.BlocksPerSec * float64(payload) / 1e6
	if c.Bool("json") {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tstages\tblock\tblocks\tseconds\tblocks/s\tMB/s\tcpus")
	block := fmt.Sprintf("%d B", size)
	if size == 0 {
		block = "int (cbor)"
	}
	fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%.3f\t%.0f\t%.1f\t%d\n", res.Scenario, stages, block, count, med, res.BlocksPerSec, res.MBPerSec, res.CPUs)
	return tw.Flush()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	for i := range s {
		for k := i + 1; k < len(s); k++ {
			if s[k] < s[i] {
				s[i], s[k] = s[k], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// benchPipeline builds source → stages × forward → discard.
func benchPipeline(stages, size, count int) ([]byte, error) {
	p := pipeline.Pipeline{Name: "bench"}
	codecName := "cbor"
	if size > 0 {
		codecName = "bytes"
		p.Jobs = append(p.Jobs, pipeline.Job{ID: 1, Type: "bench_source", Args: map[string]any{"size": size, "count": count}, Outputs: []int{1}})
	} else {
		p.Jobs = append(p.Jobs, pipeline.Job{ID: 1, Type: "counter", Args: map[string]any{"count": count}, Outputs: []int{1}})
	}
	for s := 1; s <= stages; s++ {
		p.Jobs = append(p.Jobs, pipeline.Job{ID: s + 1, Type: "forward", Inputs: []int{s}, Outputs: []int{s + 1}})
	}
	p.Jobs = append(p.Jobs, pipeline.Job{ID: stages + 2, Type: "discard", Inputs: []int{stages + 1}})
	for id := 1; id <= stages+1; id++ {
		pp := pipeline.Pipe{ID: id, Codec: codecName}
		if size > 0 {
			pp.BlockSize = size
		}
		p.Pipes = append(p.Pipes, pp)
	}
	return pipeline.EncodeCBOR(&p)
}

// benchSource emits count blocks of size bytes.
type benchSource struct {
	Size  int `json:"size"`
	Count int `json:"count"`
}

func (b *benchSource) Generate(ctx *job.Context, emit func(any) error) error {
	buf := make([]byte, b.Size)
	for i := 0; i < b.Count; i++ {
		buf[0] = byte(i)
		if i == b.Count-1 {
			ctx.Finish()
		}
		if err := emit(buf); err != nil {
			return err
		}
	}
	return nil
}
