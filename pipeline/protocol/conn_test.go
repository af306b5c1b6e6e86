package protocol

import "testing"

func TestWorkerConnNameRoundTrips(t *testing.T) {
	if w, ok := WorkerOfConnName(WorkerConnName("mic-1")); !ok || w != "mic-1" {
		t.Fatalf("WorkerOfConnName(WorkerConnName(mic-1)) = %q, %v", w, ok)
	}
	for _, name := range []string{"", "marvelo-worker", "marvelo-worker ", "marvelo", "marvelo-broker", "marvelo-worker a.b", "marvelo-worker a b"} {
		if w, ok := WorkerOfConnName(name); ok {
			t.Errorf("WorkerOfConnName(%q) = %q, true; want not a worker connection", name, w)
		}
	}
}
