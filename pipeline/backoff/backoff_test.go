package backoff

import (
	"context"
	"testing"
	"time"
)

func TestWaitsDoubleFromFirstAndStayAtMax(t *testing.T) {
	b := Backoff{First: 100 * time.Millisecond, Max: 5 * time.Second}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("wait %d: got %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
}

func TestResetStartsAgainFromFirst(t *testing.T) {
	b := Backoff{First: time.Second, Max: 30 * time.Second}
	for range 4 {
		b.Next()
	}
	b.Reset()
	if got := b.Next(); got != time.Second {
		t.Fatalf("after Reset: got %v, want 1s", got)
	}
}

func TestFirstEqualToMaxIsAConstantSpacing(t *testing.T) {
	b := Backoff{First: 250 * time.Millisecond, Max: 250 * time.Millisecond}
	for i := range 5 {
		if got := b.Next(); got != 250*time.Millisecond {
			t.Fatalf("wait %d: got %v, want 250ms", i+1, got)
		}
	}
}

func TestWaitReportsTrueOnceTheWaitHasPassed(t *testing.T) {
	b := Backoff{First: 20 * time.Millisecond, Max: time.Second}
	start := time.Now()
	if !b.Wait(context.Background()) {
		t.Fatal("Wait reported false with a context that never ends")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Wait returned after %v, before its 20ms", d)
	}
}

func TestWaitReportsFalseAsSoonAsTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	b := Backoff{First: time.Hour, Max: time.Hour}
	start := time.Now()
	if b.Wait(ctx) {
		t.Fatal("Wait reported true though its context ended first")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Wait returned %v after its context ended", d)
	}
}

func TestPauseWithAnEndedContextReturnsFalseAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 100 { // a zero wait must not win a race against the ended context
		if Pause(ctx, 0) {
			t.Fatal("Pause reported true with an ended context")
		}
	}
}
