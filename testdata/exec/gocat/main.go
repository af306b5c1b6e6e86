// Command gocat is a marvelo executable job written in Go with package stream: it copies every
// block, head included, from input k to output k (output k gets input k mod the number of
// inputs), on pipes of any codec.
//
//	{"id": 5, "exec": {"path": "./gocat", "params": ["-codec", "json"], "mode": "fd",
//	                   "dependencies": "gocat"},
//	 "inputs": [104], "outputs": [105]}
//	build: go build -o gocat ./testdata/exec/gocat
//
// Flags (exec.params): -codec cbor|json|bytes, -block-size N (bytes), -head-size H (0: the job
// has no heads). The adapter adds -i IN ... -o OUT ...: named pipes (fifo) or descriptors (fd).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/marvelo/marvelo/worker/execjob/stream"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gocat:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	a, err := stream.ParseArgs(args, "", "")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("gocat", flag.ContinueOnError)
	codecName := fs.String("codec", "cbor", "codec of every pipe: cbor, json or bytes")
	blockSize := fs.Int("block-size", 0, "block size of a bytes pipe")
	headSize := fs.Int("head-size", 0, "head size in bytes, 0 when the job has no heads")
	if err := fs.Parse(a.Params); err != nil {
		return err
	}
	if len(a.Inputs) == 0 {
		return fmt.Errorf("needs at least one input (-i)")
	}
	j, err := stream.Open(args, stream.Config{
		Format:   stream.Format{Codec: *codecName, BlockSize: *blockSize},
		HeadSize: *headSize,
	})
	if err != nil {
		return err
	}
	defer j.Close()
	fmt.Fprintf(os.Stderr, "gocat: job %s of %s, %d inputs, %d outputs\n",
		os.Getenv("MARVELO_JOB"), os.Getenv("MARVELO_PIPELINE"), len(j.In), len(j.Out))
	bufs := make([][]byte, len(j.In))
	heads := make([]uint32, len(j.In))
	n := 0
	for {
		for k, in := range j.In {
			bufs[k], heads[k], err = in.Next(bufs[k][:0])
			if err == io.EOF {
				fmt.Fprintf(os.Stderr, "gocat: %d blocks\n", n)
				return j.Close()
			}
			if err != nil {
				return err
			}
		}
		for k, out := range j.Out {
			if err := out.Write(bufs[k%len(bufs)], heads[k%len(bufs)]); err != nil {
				return err
			}
		}
		n++
	}
}
