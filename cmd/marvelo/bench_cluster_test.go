package main

import (
	"strings"
	"testing"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

func TestBenchClusterUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "--broker", "nats://127.0.0.1:4222"}, "leave --broker out"},
		{[]string{"cluster", "--baseline", "--quick"}, "--baseline does not apply to cluster"},
	} {
		r := runBench(t, tc.args...)
		if r.code != cliutil.ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, cliutil.ExitUsage, tc.want)
		}
	}
}
