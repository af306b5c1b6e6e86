package broker

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartFailsAtOnceWhenThePortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	b, err := Start(Options{Listen: l.Addr().String(), Memory: true})
	if err == nil {
		b.Shutdown()
		t.Fatal("Start succeeded on a port in use")
	}
	if !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("error %q does not say the address is in use", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Start took %s to fail", d)
	}
}
