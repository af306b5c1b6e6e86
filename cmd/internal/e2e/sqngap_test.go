package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestBlockFarAheadInjectedIntoAPipeFailsTheSinkWithoutWritingDummies: one block with SQN 2^40
// published into the pipe of a running counter → csv_sink (as anyone able to publish on it could)
// fails the sink with a protocol violation that marvelo status and marvelo logs show, naming
// pipeline, job, pipe and both SQNs; the file keeps the rows it had, with no dummy row; and
// stop --force of the failed pipeline, nothing of it running any more, says so. Both when the
// pipe goes through the broker (the sink spread) and when it is chained (both jobs on the one
// worker): a chained pipe's consumer reads the pipe's stream too, so what a client puts there
// reaches it.
func TestBlockFarAheadInjectedIntoAPipeFailsTheSinkWithoutWritingDummies(t *testing.T) {
	for _, spread := range []bool{true, false} {
		name := map[bool]string{true: "spread", false: "chained"}[spread]
		t.Run(name, func(t *testing.T) { blockFarAheadFailsTheSink(t, spread) })
	}
}

func blockFarAheadFailsTheSink(t *testing.T, spread bool) {
	c := newCluster(t, clusterOpts{})
	if c.identities {
		t.Skip("publishes into a pipe as a plain client, which identities refuse")
	}
	c.startWorker("wa")
	out := filepath.Join(c.dir, "far.csv")
	doc := c.writeDoc("far.json", fmt.Sprintf(`{"name": "far", "jobs": [
    {"id": 1, "type": "counter", "args": {"start": 1, "interval": "500ms"}, "outputs": [1]},
    {"id": 2, "type": "csv_sink", "args": {"path": %q}, "inputs": [1], "spread": %v}]}`, out, spread))
	c.submit(doc)
	waitRows(c, out, 2)
	if chained := c.status("far").Chained; spread != (len(chained) == 0) {
		t.Fatalf("spread %v, and status says the chained pipes are %v", spread, chained)
	}
	// Right after a row: the counter's next block is about 500 ms away, so the sink meets the
	// injected block first (the counter's next publish is then fenced off, as a stale writer's).
	waitRows(c, out, len(readLinesIfAny(out)))
	before := readLinesIfAny(out)

	opts := []nats.Option{nats.Name("e2e injector")}
	if c.token != "" {
		opts = append(opts, nats.Token(c.token))
	}
	nc, err := nats.Connect(c.url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const far = uint64(1) << 40
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	block := codec.AppendBlock(nil, codec.Block{SQN: far, Payload: []byte{0x01}}, 1) // CBOR 1
	if _, err := js.Publish(ctx, protocol.PipeSubject("far", 1), block); err != nil {
		t.Fatal(err)
	}

	var st protocol.PipelineStatus
	c.waitFor("the sink to fail", func() bool {
		st = c.status("far")
		return jobState(st, 2) == protocol.StateFailed
	})
	var jobErr string
	for _, j := range st.Jobs {
		if j.ID == 2 {
			jobErr = j.Error
		}
	}
	want := fmt.Sprintf("input pipe 1: protocol violation: expected SQN %d, received a block with SQN %d", len(before), far)
	if !strings.Contains(jobErr, "pipeline far: job 2 (csv_sink)") || !strings.Contains(jobErr, want) {
		t.Fatalf("job 2's error in status: %q\nwant it to name pipeline far, job 2 (csv_sink) and %q", jobErr, want)
	}
	t.Logf("job 2 in marvelo status: %s", jobErr)
	c.waitFor("the pipeline to end failed", func() bool { return c.status("far").State == protocol.StateFailed })

	after := readLinesIfAny(out)
	if len(after) != len(before) {
		t.Errorf("the file had %d lines when the block was injected and %d after the sink failed", len(before), len(after))
	}
	for i, l := range after[1:] {
		if v, err := strconv.Atoi(l); err != nil || v != i+1 {
			t.Fatalf("row %d is %q, want %d: a dummy row, or a row lost", i+1, l, i+1)
		}
	}

	logs, errOut, code := c.marvelo("logs", "far")
	if code != 0 || !strings.Contains(logs+errOut, "protocol violation") {
		t.Errorf("marvelo logs far: exit %d, no protocol violation in:\n%s%s", code, logs, errOut)
	}
	_, errOut, code = c.marvelo("stop", "far", "--force")
	if code == 0 || !strings.Contains(errOut, "pipeline far is already failed") {
		t.Errorf("stop --force of the failed pipeline: exit %d: %s", code, errOut)
	}
}
