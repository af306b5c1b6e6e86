package worker

import "sync"

// linkKey names one chained pipe of one placement: the pipeline, the pipe and the epoch both of
// its ends were placed at (PipeBinding.Chain).
type linkKey struct {
	pipeline string
	pipe     int
	chain    uint64
}

// links are the chained pipes of this worker's jobs, by key; each end opens its link and closes
// it once done, and the last to close forgets it.
type links struct {
	mu sync.Mutex
	m  map[linkKey]*link
}

func newLinks() *links { return &links{m: map[linkKey]*link{}} }

// link is one chained pipe (filled in below).
type link struct {
	refs int
}
