// Package builtin holds the job types every marvelo worker carries: counter, clock, forward, sum,
// product, collect, csv_sink, logging_sink, interactive and discard (DESIGN.md §5).
package builtin

import (
	"github.com/marvelo/marvelo/pipeline/job"
)

// Registry returns a new registry holding the builtin job types; a worker of your own registers
// its types on top of it.
func Registry() *job.Registry {
	r := job.NewRegistry()
	Register(r)
	return r
}

// Register adds the builtin job types to r.
func Register(r *job.Registry) {
	r.Register("counter", "source: start, start+step, … (args start=1, step=1, count=0 endless, interval=\"0s\"); the last block is finished", func() any { return &Counter{Start: 1, Step: 1} })
	r.Register("clock", "source: 1 every interval (args interval=\"40ms\", count=0 endless)", func() any { return &Clock{Interval: job.Duration(defaultClockInterval)} })
	r.Register("forward", "n inputs → the same n values on n outputs; 1 input → its value on every output", func() any { return &Forward{} })
	r.Register("sum", "the sum of all inputs (a list input adds its elements); integers stay integers", func() any { return &Sum{} })
	r.Register("product", "the product of all inputs (a list input multiplies its elements); integers stay integers", func() any { return &Product{} })
	r.Register("collect", "the values of all inputs as one list", func() any { return &Collect{} })
	r.Register("csv_sink", "sink: a header pipe_<id> per input, then one row per compute block (args path, echo=false)", func() any { return &CSVSink{} })
	r.Register("interactive", "source: each non-empty line typed into marvelo run / submit --follow", func() any { return &Interactive{} })
	r.Register("logging_sink", "sink: the rows of jobs run with log: true, as CSV (args path)", func() any { return &LoggingSink{} })
	r.Register("discard", "sink: counts compute blocks and logs count, duration and rate at the end", func() any { return &Discard{} })
}
