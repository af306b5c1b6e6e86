package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Removing ended pipelines (marvelo rm): finished, failed and stopped pipelines stayed in status,
// top and the store for good. A removed pipeline is forgotten: its state and events (memory and
// KV), its sources' and sinks' checkpoints, its pipes if any are left and its log lines. A
// pipeline that has not ended is refused: stop it first.

// removeTimeout bounds the store and log requests of one removal.
const removeTimeout = 10 * time.Second

func (c *control) handleRemove(m *nats.Msg) any {
	var req protocol.RemoveRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.RemoveReply{Reply: protocol.Reply{Error: "remove: " + err.Error()}}
	}
	if err := c.opts.fenced(); err != nil {
		return protocol.RemoveReply{Reply: protocol.Reply{Error: "remove: " + err.Error()}}
	}
	c.respondLater(m, "remove", func(context.Context) any { return c.remove(req) }) // store and stream requests: not on the subscription's goroutine
	return nil
}

// remove forgets the ended pipelines req names (or every ended one). A pipeline being removed is
// marked so under mu, then removed from the store and the log stream without the lock, then from
// memory: a submission of its name meanwhile is refused instead of being deleted with it.
func (c *control) remove(req protocol.RemoveRequest) protocol.RemoveReply {
	var errs []error
	var gone []removal
	c.mu.Lock()
	names := req.Pipelines
	if req.Ended {
		for name, p := range c.pipelines {
			if p.state.terminal() {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		p, ok := c.pipelines[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("no pipeline named %q", name))
		case p.removing:
			errs = append(errs, fmt.Errorf("pipeline %s is being removed already", name))
		case !p.state.terminal():
			errs = append(errs, fmt.Errorf("pipeline %s is still %s: stop it first (marvelo stop %s)", name, p.state, name))
		default:
			p.removing = true
			gone = append(gone, removal{p: p, pipes: !p.cleaned})
			p.cleaned = true // its pipes are deleted here, not by a late job report
		}
	}
	c.mu.Unlock()
	var removed []string
	for _, g := range gone {
		if err := c.forget(g); err != nil {
			errs = append(errs, err)
			c.mu.Lock()
			g.p.removing = false // kept: it may be removed again
			c.mu.Unlock()
			continue
		}
		removed = append(removed, g.p.doc.Name)
	}
	r := protocol.RemoveReply{Reply: protocol.Reply{OK: len(errs) == 0}, Removed: removed}
	if err := errors.Join(errs...); err != nil {
		r.Error = err.Error()
	}
	return r
}

// removal is a pipeline being removed; pipes: its pipes were not deleted when it ended.
type removal struct {
	p     *pipelineState
	pipes bool
}

// forget removes an ended pipeline marked removing from the store, the log stream and memory.
func (c *control) forget(g removal) error {
	p := g.p
	name := p.doc.Name
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	if g.pipes {
		c.deletePipes(p.doc)
	}
	if err := c.store.forgetCheckpoints(ctx, p.doc); err != nil {
		return fmt.Errorf("pipeline %s: %w", name, err)
	}
	if err := c.store.deletePipeline(ctx, name, nil); err != nil {
		return fmt.Errorf("pipeline %s: saved state: %w", name, err)
	}
	if logs, err := c.js.Stream(ctx, protocol.LogStream); err == nil {
		err = logs.Purge(ctx, jetstream.WithPurgeSubject(protocol.LogFilter(name)))
		if err != nil {
			c.log.Warn("log lines of a removed pipeline not purged; they age out", "pipeline", name, "error", err)
		}
	}
	c.mu.Lock()
	if c.pipelines[name] == p {
		delete(c.pipelines, name)
	}
	c.mu.Unlock()
	c.log.Info("pipeline removed", "pipeline", name)
	return nil
}
