//go:build linux

package execjob

import (
	"strings"
	"testing"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
)

// TestOutputInAnotherCodecNamesThePipeItsCodecAndTheFix: text lines on a cbor pipe fail at the
// first frame, before any block is taken (CBOR reads "-19\n" as three small integers); JSON lines
// cut into bytes blocks and CBOR on a json pipe fail where the frames break, with the same
// description of the bytes and what to declare.
func TestOutputInAnotherCodecNamesThePipeItsCodecAndTheFix(t *testing.T) {
	cases := []struct {
		name      string
		c         codec.Codec
		defaulted bool
		body      string // writes the output, descriptor 8
		blocks    int
		want      string
	}{
		{"JSON lines on cbor, the default", mustCodec(t, codec.CBOR, 0), true, `printf '%s\n%s\n' -19 -18 >&8`, 0,
			`job 7 (bad.sh): output pipe 106 is cbor (the default), but the program wrote JSON lines ("-19\n…"): declare {"id": 106, "codec": "json"} in "pipes"`},
		{"JSON lines on bytes", mustCodec(t, codec.Bytes, 8), false, `printf '[1, 2]\n[3, 4]\n' >&8`, 1,
			`job 7 (bad.sh): output pipe 106: bytes frame at byte 8: unexpected EOF: block has 6 of 8 bytes; pipe 106 is bytes, but the program wrote JSON lines ("[1, 2]\n…"): declare {"id": 106, "codec": "json"} in "pipes"`},
		{"CBOR on json", mustCodec(t, codec.JSON, 0), false, `printf '\202\001\002' >&8`, 0,
			`; pipe 106 is json, but the program wrote binary data (0x82 0x01 0x02): declare {"id": 106, "codec": "cbor"} in "pipes" for CBOR items`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			script(t, dir, "bad.sh", `open_out 8 "$2"; `+c.body)
			spec := Spec{JobID: 7, WorkDir: dir, Exec: pipeline.Exec{Path: "./bad.sh"},
				Outputs: ports(c.c, 1, 106), DefaultCodec: map[int]bool{106: c.defaulted}}
			r := runJob(t, spec, nil)
			if len(r.outs[0].blocks) != c.blocks {
				t.Errorf("%d blocks taken before the error, want %d", len(r.outs[0].blocks), c.blocks)
			}
			err := r.outs[0].err
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v\nwant it to hold %s", err, c.want)
			}
			if got := r.p.OutputMismatch(0); got == "" || !strings.Contains(err.Error(), got) {
				t.Errorf("OutputMismatch %q", got)
			}
		})
	}
}
