package benchkit

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func startServer(t testing.TB) *Server {
	t.Helper()
	s, err := StartServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestRelays(t *testing.T) {
	s := startServer(t)
	type runner func(context.Context, RelayConfig) (RelayResult, error)
	for _, kind := range []struct {
		name string
		run  runner
	}{{"core", CoreRelays}, {"jetstream", JetStreamRelays}} {
		for _, tc := range []struct {
			topo  Topology
			size  int
			count int
			rate  float64
		}{
			{Topology{Sources: 1, Stages: 2}, 64, 3000, 0},
			{Topology{Sources: 1, Stages: 0}, 8, 1000, 0},
			{Topology{Sources: 3, Stages: 1}, 64, 1000, 0},
			{Topology{Sources: 1, Stages: 1}, 16384, 300, 0},
			{Topology{Sources: 1, Stages: 2}, 64, 200, 20000},
			{Topology{Sources: 3, Stages: 1}, 8, 100, 20000},
		} {
			name := fmt.Sprintf("%s/%dx%d/%dB/rate%g", kind.name, tc.topo.Sources, tc.topo.Stages, tc.size, tc.rate)
			t.Run(name, func(t *testing.T) {
				res, err := kind.run(context.Background(), RelayConfig{URL: s.URL(), Topology: tc.topo, Size: tc.size, Count: tc.count, Rate: tc.rate})
				if err != nil {
					t.Fatal(err)
				}
				if res.Rounds != int64(tc.count) || res.Elapsed <= 0 || res.PerSecond() <= 0 {
					t.Errorf("result %+v", res)
				}
				if tc.rate > 0 {
					if res.Latency == nil || res.Latency.Count() != uint64(tc.count) {
						t.Fatalf("latency histogram %v, want %d values", res.Latency, tc.count)
					}
					if res.Latency.Min() <= 0 {
						t.Errorf("latency min %d: a message arrived before it was sent", res.Latency.Min())
					}
				} else if res.Latency != nil {
					t.Error("an unpaced run has a latency histogram")
				}
			})
		}
	}
}

func TestRelayConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  RelayConfig
		want string
	}{
		{RelayConfig{Topology: Topology{Sources: 3}, Size: 8, Count: 1}, "join stage"},
		{RelayConfig{Topology: Topology{Stages: 1}, Size: 4, Count: 1, Rate: 10}, "needs 8 bytes"},
		{RelayConfig{Topology: Topology{Stages: 1}, Size: 8}, "count 0"},
	} {
		_, err := CoreRelays(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestRelayUnreachableServer(t *testing.T) {
	_, err := CoreRelays(context.Background(), RelayConfig{URL: "nats://127.0.0.1:1", Topology: Topology{Stages: 1}, Size: 8, Count: 1})
	if err == nil {
		t.Fatal("no error for an unreachable server")
	}
}
