package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Block is one value on one pipe as it travels: its sequence number, its head bits and the
// codec's bytes of the value.
//
// Wire format of one block (DESIGN.md §6), so any NATS client can inject or read blocks:
//
//	SQN (8 bytes, big-endian) | head (head_size bytes, big-endian) | payload (the codec's bytes)
type Block struct {
	SQN     uint64
	Head    uint32
	Payload []byte
}

// MaxHeadSize is the largest head, in bytes.
const MaxHeadSize = 4

// Reserved head bits, counted from the most significant bit of the head (DESIGN.md §7).
const (
	BitCorrupted = 0
	BitReset     = 1
	BitFinished  = 2
)

// HeadMask returns the mask of head bit i (0 = most significant) for a head of size bytes.
func HeadMask(size, bit int) uint32 {
	return 1 << (uint(size)*8 - 1 - uint(bit))
}

// HeadLimit returns the mask of all bits of a head of size bytes.
func HeadLimit(size int) uint32 {
	if size >= 4 {
		return 0xFFFFFFFF
	}
	return 1<<(uint(size)*8) - 1
}

// Flags reports the three reserved bits of a head of size bytes.
func Flags(head uint32, size int) (corrupted, reset, finished bool) {
	return head&HeadMask(size, BitCorrupted) != 0,
		head&HeadMask(size, BitReset) != 0,
		head&HeadMask(size, BitFinished) != 0
}

// BeginsRestart reports whether b restarts its sequence (SPEC §4.4): the reset bit in its head
// of size bytes, or SQN 1.
func BeginsRestart(b Block, size int) bool {
	return b.SQN == 1 || b.Head&HeadMask(size, BitReset) != 0
}

// BlockOverhead is the number of bytes the wire format adds to a payload.
func BlockOverhead(headSize int) int { return 8 + headSize }

// AppendBlock appends the wire form of b to dst.
func AppendBlock(dst []byte, b Block, headSize int) []byte {
	dst = binary.BigEndian.AppendUint64(dst, b.SQN)
	dst = AppendHead(dst, b.Head, headSize)
	return append(dst, b.Payload...)
}

// ErrShortBlock is returned for data too short to hold a block's SQN and head.
var ErrShortBlock = errors.New("block shorter than its sequence number and head")

// DecodeBlock parses one block in wire form. The payload aliases data.
func DecodeBlock(data []byte, headSize int) (Block, error) {
	if headSize < 1 || headSize > MaxHeadSize {
		return Block{}, fmt.Errorf("head size %d out of range 1..%d", headSize, MaxHeadSize)
	}
	if len(data) < 8+headSize {
		return Block{}, fmt.Errorf("%w: %d bytes, need at least %d", ErrShortBlock, len(data), 8+headSize)
	}
	b := Block{SQN: binary.BigEndian.Uint64(data)}
	for _, c := range data[8 : 8+headSize] {
		b.Head = b.Head<<8 | uint32(c)
	}
	b.Payload = data[8+headSize:]
	return b, nil
}

// A batch carries several consecutive blocks of one pipe in one NATS message, so a busy pipe
// pays the per-message cost once per batch instead of once per block. A message is a batch when
// it has the header BatchHeader (the number of blocks, in decimal); its data is then, for each
// block, a 4-byte big-endian length followed by the block in wire form. A message without the
// header is one block in wire form.
const BatchHeader = "Marvelo-Blocks"

// EmptyBatch is BatchHeader's value on a batch of no blocks, which every reader passes by: the
// broker appends one to a moved job's output streams to fence off its previous instance
// (broker/fence.go), and a publisher resuming a stream looks past them (worker/publisher.go).
const EmptyBatch = "0"

// EndHeader marks a message that carries no block but says the stream ends after the block whose
// SQN is the header's value (decimal): the source stopped without setting the finished bit.
const EndHeader = "Marvelo-End"

// RestartHeader names the restart a message's blocks count from: the restart its first block
// begins (a block with the reset bit or SQN 1), or the last one before it. The name is an opaque
// identity, the same each time a producer computes those blocks again, and a producer begins a
// new message where the name changes. A producer that moved or restarted recomputes what its
// inputs had not acknowledged, and may publish blocks its consumer took already; the consumer
// drops a restart whose name is the one it took last (it would otherwise restart its sequence a
// second time), and a block whose name is that of a sequence it has left (its SQN belongs to
// the old sequence). A message without the header is taken as SPEC §4.4 says.
const RestartHeader = "Marvelo-Restart"

// AppendBatchEntry appends one block of a batch to dst.
func AppendBatchEntry(dst []byte, b Block, headSize int) []byte {
	n := 8 + headSize + len(b.Payload)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	return AppendBlock(dst, b, headSize)
}

// SplitBatch calls fn for each block of a batch, in order. Payloads alias data.
func SplitBatch(data []byte, headSize int, fn func(Block) error) error {
	off := 0
	for off < len(data) {
		if len(data)-off < 4 {
			return fmt.Errorf("batch: truncated length at byte %d", off)
		}
		n := int(binary.BigEndian.Uint32(data[off:]))
		off += 4
		if n > len(data)-off {
			return fmt.Errorf("batch: block at byte %d claims %d bytes, %d remain", off-4, n, len(data)-off)
		}
		b, err := DecodeBlock(data[off:off+n], headSize)
		if err != nil {
			return fmt.Errorf("batch: block at byte %d: %w", off-4, err)
		}
		if err := fn(b); err != nil {
			return err
		}
		off += n
	}
	return nil
}
