package execjob

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
)

// TestSQNFraming: with "exec": {"sqn": true} each block the program reads is
// [8-byte big-endian SQN][head][frame], and each block it writes is read back the same way.
func TestSQNFraming(t *testing.T) {
	b4 := mustCodec(t, codec.Bytes, 4)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			// The program copies its input to its output and to a file, byte for byte.
			script(t, dir, "tee.sh", `open_in 7 "$2"; open_out 8 "$4"
cat <&7 | tee raw >&8`)
			spec := Spec{JobID: 2, WorkDir: dir, Head: true, HeadSize: 2,
				Exec:   pipeline.Exec{Path: "./tee.sh", Mode: mode, SQN: true},
				Inputs: ports(b4, 1, 1), Outputs: ports(b4, 1, 2)}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			p, err := Start(ctx, spec, (&logRec{}).log)
			if err != nil {
				t.Fatal(err)
			}
			sqns := []uint64{5, 6, 1 << 40}
			for i, s := range sqns {
				if err := p.BufferRoundSQN(s, [][][]byte{{[]byte("blk" + string(rune('a'+i)))}}, [][]uint32{{uint32(0x100 + i)}}); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := p.CloseInputs(); err != nil {
				t.Fatal(err)
			}
			for i, s := range sqns {
				payload, head, sqn, err := p.ReadOutputSQN(0, nil)
				if err != nil {
					t.Fatalf("block %d: %v", i, err)
				}
				if sqn != s || head != uint32(0x100+i) || string(payload) != "blk"+string(rune('a'+i)) {
					t.Errorf("block %d: sqn %d head %#x %q, want %d %#x %q", i, sqn, head, payload, s, 0x100+i, "blk"+string(rune('a'+i)))
				}
			}
			if _, _, _, err := p.ReadOutputSQN(0, nil); !errors.Is(err, io.EOF) {
				t.Errorf("after the last block: %v, want EOF", err)
			}
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(dir, "raw"))
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			for i, s := range sqns {
				want = binary.BigEndian.AppendUint64(want, s)
				want = append(want, 0x01, byte(i), 'b', 'l', 'k', byte('a'+i))
			}
			if !bytes.Equal(raw, want) {
				t.Errorf("the program read % x, want % x", raw, want)
			}
		})
	}
}

// TestSQNTruncated: an output that ends inside a block's SQN fails with the pipe and offset.
func TestSQNTruncated(t *testing.T) {
	b4 := mustCodec(t, codec.Bytes, 4)
	dir := t.TempDir()
	script(t, dir, "short.sh", `open_out 8 "$2"; printf '\000\000\000' >&8`)
	spec := Spec{JobID: 7, WorkDir: dir, Exec: pipeline.Exec{Path: "./short.sh", SQN: true},
		Outputs: ports(b4, 1, 106)}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	p, err := Start(ctx, spec, (&logRec{}).log)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = p.ReadOutputSQN(0, nil)
	if err == nil || !strings.Contains(err.Error(), "output pipe 106: bytes frame at byte 0: unexpected EOF: SQN has 3 of 8 bytes") {
		t.Errorf("error %v, want the truncated SQN named", err)
	}
	p.Wait()
}
