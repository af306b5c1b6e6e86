package protocol

import "strings"

// workerConnPrefix starts the NATS client name of a worker's connection.
const workerConnPrefix = "marvelo-worker "

// WorkerConnName is the NATS client name of a worker's connection: "marvelo-worker NAME". The
// broker maps the NATS server's disconnect event of a connection to its worker by it (DESIGN.md
// §8), and `nats server report connections` shows which worker each connection is.
func WorkerConnName(worker string) string { return workerConnPrefix + worker }

// WorkerOfConnName returns the worker a NATS client name names; ok is false for a name that is
// not a worker connection's (the marvelo command, the broker, a worker of an older version).
func WorkerOfConnName(name string) (worker string, ok bool) {
	w, ok := strings.CutPrefix(name, workerConnPrefix)
	if !ok || CheckName("worker", w) != nil {
		return "", false
	}
	return w, true
}
