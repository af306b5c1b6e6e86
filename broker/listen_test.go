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

// TestPortZeroMeansAnyFreePortForClientsAndMonitoring: NATS reads port 0 as its default (4222)
// and, for monitoring, as off; the broker's --listen and --monitor read it as net.Listen does,
// and say which port they bound.
func TestPortZeroMeansAnyFreePortForClientsAndMonitoring(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:0", Monitor: "127.0.0.1:0", Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	for _, u := range []struct{ what, url string }{{"client", b.ClientURL()}, {"monitoring", b.MonitorURL()}} {
		_, port, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(u.url, "nats://"), "http://"))
		if err != nil {
			t.Fatalf("%s URL %q: %v", u.what, u.url, err)
		}
		if port == "0" || port == "4222" || port == "8222" {
			t.Errorf("%s URL %q: want a free port the server picked", u.what, u.url)
		}
		c, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimPrefix(u.url, "nats://"), "http://"))
		if err != nil {
			t.Errorf("%s URL %q does not answer: %v", u.what, u.url, err)
			continue
		}
		c.Close()
	}
}
