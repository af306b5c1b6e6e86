package main

import (
	"strings"
	"testing"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

func TestBenchSyncUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"linear", "--sync", "sometimes"}, "want always or a positive duration"},
		{[]string{"linear", "--sync", ","}, "want always, a duration, or a list"},
		{[]string{"cluster", "--sync", "always"}, "cluster runs in memory"},
		{[]string{"linear", "--sync", "always", "--broker", "nats://127.0.0.1:4222"}, "a --broker keeps its own"},
		{[]string{"linear", "--sync", "always", "--baseline"}, "--baseline's ceilings run in memory"},
		{[]string{"failover", "--sync", "always"}, "failover runs marvelo-broker processes of its own"},
	} {
		r := runBench(t, tc.args...)
		if r.code != cliutil.ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, cliutil.ExitUsage, tc.want)
		}
	}
}
