package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestLoopbackReturnsDistinctPortsOutsideTheEphemeralRangeThatCanBeBound(t *testing.T) {
	ports, err := Loopback(20)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 20 {
		t.Fatalf("got %d ports, want 20", len(ports))
	}
	first, rangeKnown := ephemeralStart()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d returned twice: %v", p, ports)
		}
		seen[p] = true
		if rangeKnown == nil && (p < lowest || p >= first) {
			t.Errorf("port %d lies outside %d..%d, below the ephemeral range", p, lowest, first-1)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d cannot be bound: %v", p, err)
			continue
		}
		l.Close()
	}
}

func TestAPortInUseIsSkipped(t *testing.T) {
	ports, err := Loopback(1)
	if err != nil {
		t.Fatal(err)
	}
	p := ports[0]
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := within(1, p, p); err == nil {
		t.Fatalf("within(1, %d, %d) with %d in use = %v, want an error", p, p, p, got)
	}
	l.Close()
	if got, err := within(1, p, p); err != nil || len(got) != 1 || got[0] != p {
		t.Fatalf("within(1, %d, %d) with %d free = %v, %v; want [%d]", p, p, p, got, err, p)
	}
}
