package main

import (
	"strings"
	"testing"
)

func TestBenchFailoverRunsAloneAndOnItsOwnBroker(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"failover", "linear"}, "failover runs alone"},
		{[]string{"failover", "--broker", "nats://127.0.0.1:1"}, "--broker does not apply"},
	} {
		r := runBench(t, c.args...)
		r.want(t, 2)
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("bench %v: stderr %q, want it to say %q", c.args, r.stderr, c.want)
		}
	}
}
