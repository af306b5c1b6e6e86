// Package benchkit is the machinery of `marvelo bench` that does not depend on marvelo's worker:
// a latency histogram, one process clock for timestamps carried in blocks, pacing at a fixed
// rate, process CPU time and peak RSS, an embedded NATS server, and the baseline relays — the
// same topologies as plain nats.go programs over core NATS and JetStream, which give every
// marvelo figure its ceiling.
package benchkit

import (
	"encoding/binary"
	"time"
)

// epoch is the origin of Now: the whole process shares it, so a timestamp taken by one job is
// comparable with the clock read by another.
var epoch = time.Now()

// Now returns the process's monotonic clock in nanoseconds since the package was loaded. It reads
// the clock once (time.Since takes the monotonic reading only), which matters where reading the
// clock is a system call (some virtual machines).
func Now() int64 { return int64(time.Since(epoch)) }

// StampSize is the size of the timestamp at the start of a stamped block.
const StampSize = 8

// PutStamp writes the timestamp t into the first 8 bytes of b (little-endian). b must hold at
// least StampSize bytes.
func PutStamp(b []byte, t int64) { binary.LittleEndian.PutUint64(b, uint64(t)) }

// Stamp reads the timestamp from the first 8 bytes of b, or returns 0 when b is shorter.
func Stamp(b []byte) int64 {
	if len(b) < StampSize {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(b))
}
