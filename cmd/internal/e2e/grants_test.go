package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Grants that scale (issue 23): the jobs placed together are granted to their workers with one
// permissions reload, so submitting a long chain to a worker with an identity of its own takes
// about as long as it takes without identities.
//
// The figure: MARVELO_E2E_CHAIN_JOBS=10,100,1000 go test -run TestSubmitOfALongChain -v
// ./cmd/internal/e2e/ logs the submit time of each length (default 1000). No timed assertion:
// the machine is shared.

// longChainDoc is counter → forward × (jobs-2) → discard. Every pipe is a stream with a
// max_queue: a plain stored pipe reserves its byte limit (64 MiB) in JetStream, so 999 of them
// would exceed this machine's JetStream memory; a max_queue pipe reserves nothing and drops
// nothing here (a few blocks, a queue of 64).
func longChainDoc(c *cluster, name string, jobs, count int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"name": %q, "jobs": [`+"\n", name)
	fmt.Fprintf(&b, `  {"id": 1, "type": "counter", "args": {"count": %d}, "outputs": [1]}`, count)
	for id := 2; id < jobs; id++ {
		fmt.Fprintf(&b, ",\n"+`  {"id": %d, "type": "forward", "inputs": [%d], "outputs": [%d], "max_queue": 64}`, id, id-1, id)
	}
	fmt.Fprintf(&b, ",\n"+`  {"id": %d, "type": "discard", "inputs": [%d], "max_queue": 64}`+"\n]}", jobs, jobs-1)
	return c.writeDoc(name+".json", b.String())
}

func chainLengths(t *testing.T) []int {
	env := os.Getenv("MARVELO_E2E_CHAIN_JOBS")
	if env == "" {
		return []int{1000}
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 3 {
			t.Fatalf("MARVELO_E2E_CHAIN_JOBS=%s: want lengths of at least 3, comma separated", env)
		}
		out = append(out, n)
	}
	return out
}

// TestSubmitOfALongChainToAWorkerWithAnIdentity submits a chain of 1,000 jobs (a counter, 998
// forwards, a discard) to one worker with an identity of its own, and checks every job is placed
// on it, runs, and the pipeline finishes with every block through. It logs the submit time.
func TestSubmitOfALongChainToAWorkerWithAnIdentity(t *testing.T) {
	for _, jobs := range chainLengths(t) {
		t.Run(strconv.Itoa(jobs), func(t *testing.T) {
			c := newCluster(t, clusterOpts{identities: true})
			c.startWorker("w1", "--slots", strconv.Itoa(jobs))
			const blocks = 5
			name := fmt.Sprintf("chain%d", jobs)
			doc := longChainDoc(c, name, jobs, blocks)
			began := time.Now()
			c.submit(doc)
			took := time.Since(began)
			t.Logf("submit of a %d-job chain to one worker with an identity: %s", jobs, took.Round(time.Millisecond))
			st := c.status(name)
			if len(st.Jobs) != jobs {
				t.Fatalf("%d jobs in the status, want %d", len(st.Jobs), jobs)
			}
			for _, j := range st.Jobs {
				if j.Worker != "w1" {
					t.Fatalf("job %d on worker %q, want w1 (state %s)", j.ID, j.Worker, j.State)
				}
			}
			st = waitFinished(c, name)
			for _, j := range st.Jobs {
				if j.State != protocol.StateFinished {
					t.Fatalf("job %d %s, want finished", j.ID, j.State)
				}
			}
			last := st.Jobs[len(st.Jobs)-1]
			for _, j := range st.Jobs {
				if j.ID == jobs {
					last = j
				}
			}
			if last.Stats.BlocksIn != blocks {
				t.Fatalf("the discard read %d blocks, want %d", last.Stats.BlocksIn, blocks)
			}
		})
	}
}
