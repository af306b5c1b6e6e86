package builtin

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/marvelo/marvelo/pipeline/job"
)

// CSVSink writes one row per compute block (CSVSinkJob): a header with a column pipe_<id> per
// input, then the inputs' values — numbers in decimal, strings as they are, anything else as
// compact JSON. Every row is flushed, so the file is complete up to the last block at any time.
//
// It checkpoints the file's length with every row (the worker stores it with the row's SQN): a
// sink that restarts — moved to another worker, or with the broker — and finds its file cuts it
// back to that length and appends, so every row is in the file once. Where the file is not there
// (another machine), it starts the file again and says so, naming both workers, in its log and
// as an event of the pipeline (job.Context.Notify).
type CSVSink struct {
	Path string `json:"path" marvelo:"required" help:"the CSV file, relative to the job's working directory"`
	// Echo also prints each row to the job's output (shown by marvelo run and marvelo logs).
	Echo bool `json:"echo" help:"also print each row to the job's output"`

	f        *os.File
	w        *csv.Writer
	row      []string
	name     string
	worker   string
	off      int64     // bytes in the file so far
	restored *csvState // the checkpoint of a previous instance, if any
}

// csvState is a file sink's checkpoint.
type csvState struct {
	Path   string `json:"path"`
	Offset int64  `json:"offset"`
	Worker string `json:"worker"`
}

// Validate checks the args.
func (s *CSVSink) Validate() error {
	if strings.TrimSpace(s.Path) == "" {
		return fmt.Errorf("path is empty")
	}
	return nil
}

// Setup creates the file (and its folder) and writes the header, or reopens the file of a
// previous instance at its checkpoint.
func (s *CSVSink) Setup(ctx *job.Context) error {
	resumed, err := s.open(ctx)
	if err != nil || resumed {
		return err
	}
	header := make([]string, len(ctx.InputPipes()))
	for k, id := range ctx.InputPipes() {
		header[k] = "pipe_" + strconv.Itoa(id)
	}
	return s.write(header)
}

// Checkpoint is the file's length after the rows written so far.
func (s *CSVSink) Checkpoint() ([]byte, error) {
	return json.Marshal(csvState{Path: s.name, Offset: s.off, Worker: s.worker})
}

// Restore keeps a previous instance's checkpoint for Setup.
func (s *CSVSink) Restore(state []byte) error {
	var st csvState
	if err := json.Unmarshal(state, &st); err != nil {
		return fmt.Errorf("csv checkpoint: %w", err)
	}
	s.restored = &st
	return nil
}

// open creates the file, and its folder, relative to the job's working directory; resumed is
// true when it reopened a previous instance's file at its checkpoint instead.
func (s *CSVSink) open(ctx *job.Context) (resumed bool, err error) {
	s.name = s.Path
	if !filepath.IsAbs(s.name) {
		s.name = filepath.Join(ctx.WorkDir, s.name)
	}
	s.worker = ctx.Worker
	if err := os.MkdirAll(filepath.Dir(s.name), 0o755); err != nil {
		return false, fmt.Errorf("csv %s: %w", s.name, err)
	}
	if st := s.restored; st != nil {
		if ok, err := s.resume(st); ok || err != nil {
			return ok, err
		}
		ctx.Notify(fmt.Sprintf("csv %s: the file worker %s wrote (%d bytes) is not here on worker %s; starting it again", s.name, st.Worker, st.Offset, ctx.Worker),
			"previous_worker", st.Worker, "worker", ctx.Worker)
	}
	f, err := os.Create(s.name)
	if err != nil {
		return false, fmt.Errorf("csv: %w", err)
	}
	s.f, s.w, s.off = f, csv.NewWriter(&countingWriter{f, &s.off}), 0
	return false, nil
}

// resume reopens the file at its checkpoint: false when the file is not there or shorter.
func (s *CSVSink) resume(st *csvState) (bool, error) {
	f, err := os.OpenFile(s.name, os.O_RDWR, 0)
	if err != nil {
		return false, nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() < st.Offset {
		f.Close()
		return false, nil
	}
	if err := f.Truncate(st.Offset); err != nil {
		f.Close()
		return false, fmt.Errorf("csv %s: cut back to the checkpoint: %w", s.name, err)
	}
	if _, err := f.Seek(st.Offset, io.SeekStart); err != nil {
		f.Close()
		return false, fmt.Errorf("csv %s: %w", s.name, err)
	}
	s.f, s.w, s.off = f, csv.NewWriter(&countingWriter{f, &s.off}), st.Offset
	return true, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	*c.n += int64(n)
	return n, err
}

// Run writes one row.
func (s *CSVSink) Run(ctx *job.Context, in ...any) error {
	s.row = s.row[:0]
	for _, v := range in {
		cell, err := csvCell(v)
		if err != nil {
			return err
		}
		s.row = append(s.row, cell)
	}
	if s.Echo {
		ctx.Printf("%s", strings.Join(s.row, ","))
	}
	return s.write(s.row)
}

func (s *CSVSink) write(row []string) error {
	if err := s.w.Write(row); err != nil {
		return fmt.Errorf("csv %s: %w", s.name, err)
	}
	s.w.Flush()
	if err := s.w.Error(); err != nil {
		return fmt.Errorf("csv %s: %w", s.name, err)
	}
	return nil
}

// Close closes the file.
func (s *CSVSink) Close() error {
	if s.f == nil {
		return nil
	}
	s.w.Flush()
	err := s.w.Error()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("csv %s: %w", s.name, err)
	}
	return nil
}

// formatFloat writes a float in plain decimal where that stays short (timestamps, measurements)
// and in exponent form for very large or very small magnitudes, as Python's repr does.
func formatFloat(f float64, bits int) string {
	if a := math.Abs(f); a == 0 || (a >= 1e-4 && a < 1e16) {
		return strconv.FormatFloat(f, 'f', -1, bits)
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

func csvCell(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int:
		return strconv.Itoa(x), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return formatFloat(x, 64), nil
	case float32:
		return formatFloat(float64(x), 32), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	// Compact JSON as written, without encoding/json's HTML escaping of <, > and &.
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(jsonable(v)); err != nil {
		return "", fmt.Errorf("csv cell: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// jsonable turns maps with non-string keys (CBOR allows them) into ones encoding/json accepts.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonable(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	}
	return v
}

// Discard counts compute blocks without decoding them and logs count, duration and rate when it
// ends.
type Discard struct {
	count       uint64
	first, last time.Time
	log         func(msg string, args ...any)
}

// Setup keeps the job's log for the summary.
func (d *Discard) Setup(ctx *job.Context) error {
	d.log = ctx.Log.Info
	return nil
}

// RunRaw counts one compute block. The clock is read at the first block only: Close, which runs
// right after the last block, reads it for the end (a clock read per block would cost more than
// the rest of this job on some machines).
func (d *Discard) RunRaw(_ *job.Context, _ [][][]byte, out [][]byte) ([][]byte, error) {
	if d.count == 0 {
		d.first = time.Now()
	}
	d.count++
	return out, nil
}

// Close logs the summary.
func (d *Discard) Close() error {
	if d.count > 0 {
		d.last = time.Now()
	}
	span := d.last.Sub(d.first)
	rate := 0.0
	if span > 0 && d.count > 1 {
		rate = float64(d.count-1) / span.Seconds()
	}
	if d.log != nil {
		d.log("discard summary", "blocks", d.count, "duration", span.Round(time.Microsecond).String(), "rate_per_s", strconv.FormatFloat(rate, 'f', 0, 64))
	}
	return nil
}

// Count is the number of compute blocks seen so far.
func (d *Discard) Count() uint64 { return d.count }
