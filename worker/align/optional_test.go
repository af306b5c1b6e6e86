package align

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// reads runs SPEC §9.8's pattern: one read before anything arrives, then values arrive, then
// reads; it returns the values read.
func reads(t *testing.T, cfg pipeline.Optional, arrive []any, n int) string {
	t.Helper()
	o, err := NewOptional(7, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	read := func() {
		v, _, _ := o.Read()
		got = append(got, fmt.Sprint(v))
	}
	read()
	for _, v := range arrive {
		o.Push(v, 0)
	}
	for range n - 1 {
		read()
	}
	return strings.Join(got, ",")
}

func boolp(b bool) *bool { return &b }

// SPEC OPT1: default "d", storing on, unbounded; 1,2,3 arrive → d,1,2,3,3,3.
func TestAStoringOptionalInputGivesTheDefaultThenEachValueThenRepeatsTheLast(t *testing.T) {
	if got := reads(t, pipeline.Optional{Default: "d"}, []any{1, 2, 3}, 6); got != "d,1,2,3,3,3" {
		t.Errorf("reads %s", got)
	}
}

// SPEC OPT2: storing off; 1,2 arrive → d,1,2,d,d.
func TestANonStoringOptionalInputGivesTheDefaultOnceItsValuesAreRead(t *testing.T) {
	if got := reads(t, pipeline.Optional{Default: "d", Store: boolp(false)}, []any{1, 2}, 5); got != "d,1,2,d,d" {
		t.Errorf("reads %s", got)
	}
}

// SPEC OPT3: buffer 1, oldest; 1,2,3 arrive → d,3,3,3.
func TestAnOptionalBufferOfOneDroppingOldestKeepsTheLatestValue(t *testing.T) {
	if got := reads(t, pipeline.Optional{Default: "d", Buffer: 1, Drop: DropOldest}, []any{1, 2, 3}, 4); got != "d,3,3,3" {
		t.Errorf("reads %s", got)
	}
}

// SPEC OPT4: buffer 1, newest; 1,2,3 arrive → d,1,1,1.
func TestAnOptionalBufferOfOneDroppingNewestKeepsTheFirstValue(t *testing.T) {
	if got := reads(t, pipeline.Optional{Default: "d", Buffer: 1, Drop: DropNewest}, []any{1, 2, 3}, 4); got != "d,1,1,1" {
		t.Errorf("reads %s", got)
	}
}

// SPEC OPT5: an invalid drop mode fails at construction, naming the pipe; so does a negative
// buffer.
func TestAnInvalidOptionalDropModeOrNegativeBufferFailsNamingThePipe(t *testing.T) {
	for _, tc := range []struct {
		cfg pipeline.Optional
		msg string
	}{
		{pipeline.Optional{Drop: "middle"}, `pipe 7: optional drop mode "middle" must be 'newest' or 'oldest'`},
		{pipeline.Optional{Buffer: -1}, "pipe 7: optional buffer -1 must not be negative"},
	} {
		if _, err := NewOptional(7, tc.cfg); err == nil || err.Error() != tc.msg {
			t.Errorf("error %v, want %q", err, tc.msg)
		}
	}
}

// Heads travel with their values; a value repeated from the store keeps its head, the default has
// head 0; fresh tells a new value from a repeated one.
func TestOptionalHeadsAndFresh(t *testing.T) {
	o, err := NewOptional(1, pipeline.Optional{Default: "d", Buffer: 2})
	if err != nil {
		t.Fatal(err)
	}
	type read struct {
		v     any
		head  uint32
		fresh bool
	}
	var got []read
	rd := func() {
		v, h, f := o.Read()
		got = append(got, read{v, h, f})
	}
	rd()
	if o.Push(1, 0x80) || o.Push(2, 0x01) || !o.Push(3, 0x02) {
		t.Error("drop reports wrong")
	}
	rd()
	rd()
	rd()
	want := []read{{"d", 0, false}, {2, 0x01, true}, {3, 0x02, true}, {3, 0x02, false}}
	if fmt.Sprint(got) != fmt.Sprint(want) || o.Dropped() != 1 || o.Len() != 0 {
		t.Errorf("reads %v, want %v; dropped %d", got, want, o.Dropped())
	}
}

// Push from the pipe's reader goroutine while the job reads.
func TestOptionalConcurrent(t *testing.T) {
	o, err := NewOptional(1, pipeline.Optional{Buffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 1000 {
			o.Push(i, 0)
		}
	}()
	last := -1
	for range 1000 {
		if v, _, fresh := o.Read(); fresh {
			if v.(int) <= last {
				t.Fatalf("read %d after %d", v, last)
			}
			last = v.(int)
		}
	}
	wg.Wait()
}
