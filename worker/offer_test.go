package worker

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

func TestShebangNamesTheInterpreter(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ first, want string }{
		{"#!/usr/bin/env python3\n", "python3"},
		{"#!/usr/bin/env -S python3 -u\n", "python3"},
		{"#! /bin/sh -e\n", "/bin/sh"},
		{"\x7fELF binary", ""},
	} {
		f := filepath.Join(dir, "prog")
		if err := os.WriteFile(f, []byte(tc.first), 0o755); err != nil {
			t.Fatal(err)
		}
		if got, err := shebang(f); err != nil || got != tc.want {
			t.Errorf("shebang of %q = %q, %v; want %q", tc.first, got, err, tc.want)
		}
	}
}

func TestCanExecChecksTheProgramAndItsInterpreterOnPATH(t *testing.T) {
	bin := t.TempDir()
	script := filepath.Join(bin, "tool")
	if err := os.WriteFile(script, []byte("#!/usr/bin/env nosuchinterp\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	for _, tc := range []struct {
		exec pipeline.Exec
		want string // "" = can run
	}{
		{pipeline.Exec{Path: "./proto.py", Dependencies: "proto"}, "./proto.py needs python3, which is not on PATH"},
		{pipeline.Exec{Path: "proto.py", Dependencies: "proto"}, "proto.py needs python3, which is not on PATH"},
		{pipeline.Exec{Path: "./filter", Dependencies: "f"}, ""}, // a binary shipped with its dependencies
		{pipeline.Exec{Path: "missing"}, `executable "missing" is not on PATH`},
		{pipeline.Exec{Path: "/no/such/prog"}, "executable /no/such/prog is not on this worker"},
		{pipeline.Exec{Path: "tool"}, "tool needs nosuchinterp, which is not on PATH"},
		{pipeline.Exec{Path: script}, script + " needs nosuchinterp, which is not on PATH"},
	} {
		err := canExec(&tc.exec)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v, want it runs", tc.exec, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%+v: %v, want %q", tc.exec, err, tc.want)
		}
	}
}

// TestReserveBooksTheLastSlotOnce: many reservations at once for a worker's one free slot —
// exactly one is accepted, and a bid then declines; a stop naming the job releases the slot.
func TestReserveBooksTheLastSlotOnce(t *testing.T) {
	w := &Worker{opts: Options{Name: "w"}, info: protocol.WorkerInfo{Name: "w", Slots: 1, Types: []string{"forward"}},
		tasks: map[taskKey]*task{}, reserved: map[taskKey]reservation{}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for i := 1; i <= 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := []byte(`{"pipeline":"p` + string(rune('0'+i)) + `","job":1,"epoch":1}`)
			if _, err := w.handleReserve(data); err == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			} else if !strings.Contains(err.Error(), "no free slot any more (1 of 1 in use)") {
				t.Errorf("reservation refused with %q", err)
			}
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("%d reservations accepted for one free slot, want 1", accepted)
	}
	if b := w.bid(&pipeline.Job{ID: 2, Type: "forward"}); b.OK || b.Free != 0 || b.Reason != "no free slot (1 of 1 in use)" {
		t.Fatalf("bid with the slot reserved: %+v", b)
	}
	w.mu.Lock()
	var key taskKey
	for k := range w.reserved {
		key = k
	}
	w.releaseReservationsLocked(protocol.JobRef{Pipeline: key.pipeline, Job: 1})
	w.mu.Unlock()
	if b := w.bid(&pipeline.Job{ID: 2, Type: "forward"}); !b.OK || b.Free != 1 {
		t.Fatalf("bid after the release: %+v", b)
	}
	if b := w.bid(&pipeline.Job{ID: 3, Type: "fft"}); b.OK || b.Reason != `does not carry job type "fft"` {
		t.Fatalf("bid for a type not carried: %+v", b)
	}
	// A reservation the broker never follows with a prepare expires.
	w.mu.Lock()
	w.reserved[taskKey{"old", 1}] = reservation{epoch: 1, until: time.Now().Add(-time.Second)}
	used := w.slotsUsedLocked(time.Now())
	w.mu.Unlock()
	if used != 0 {
		t.Fatalf("an expired reservation still takes a slot (%d used)", used)
	}
}
