package broker

import (
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// typeSpec looks a Go job type up among the live workers' specs (protocol.SpecLookup): submit
// checks a document's job types and args with it before placing anything.
func (c *control) typeSpec(name string) (pipeline.TypeSpec, bool) {
	c.mu.Lock()
	var live []protocol.WorkerInfo
	for _, w := range c.workers {
		if w.alive {
			live = append(live, w.info)
		}
	}
	c.mu.Unlock()
	return protocol.SpecLookup(live)(name)
}
