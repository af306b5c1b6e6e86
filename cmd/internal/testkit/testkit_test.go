package testkit

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestAFreePortCanBeListenedOnAtOnce(t *testing.T) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// A started process's output is readable while it runs, and Kill ends its whole group: the
// shell's sleeping child too, or Done would wait for the output pipe the child still holds.
func TestAStartedProcessShowsItsOutputAsItComesAndKillEndsItsGroup(t *testing.T) {
	p := Start(t, "sh", exec.Command("sh", "-c", "echo ready; sleep 60; echo never"))
	WaitEvery(t, 10*time.Second, 5*time.Millisecond, "ready", func() bool { return strings.Contains(p.Out.String(), "ready") })
	began := time.Now()
	p.Kill()
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Kill took %s", took)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done is not closed after Kill")
	}
	if p.Err() == nil || strings.Contains(p.Out.String(), "never") {
		t.Errorf("err %v, output %q", p.Err(), p.Out.String())
	}
}
