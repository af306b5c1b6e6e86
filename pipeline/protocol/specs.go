package protocol

import "github.com/marvelo/marvelo/pipeline"

// SpecLookup finds a Go job type among the types the given workers carry: the spec the first
// worker advertising it sent (one that carries the type but sent no spec accepts any args). It is
// what the broker checks a submission against, and `marvelo validate --broker` too.
func SpecLookup(workers []WorkerInfo) func(name string) (pipeline.TypeSpec, bool) {
	return func(name string) (pipeline.TypeSpec, bool) {
		found := false
		for _, w := range workers {
			for _, s := range w.Specs {
				if s.Name == name {
					return s, true
				}
			}
			for _, t := range w.Types {
				found = found || t == name
			}
		}
		return pipeline.TypeSpec{Name: name, Open: true}, found
	}
}
