package pipeline

import (
	"fmt"
	"slices"
)

// Notes lists what a valid document says by default that is easily not what was meant, each
// with its path and kind ProblemWarning: `marvelo validate` prints them as warnings. For now one:
// an executable job's pipe without a codec is cbor, so the program must read or write CBOR data
// items; one writing JSON lines there produces garbage. Go and Python jobs are left out: the
// runtime does their codec for them.
func Notes(p *Pipeline) []Problem {
	if p == nil {
		return nil
	}
	var out []Problem
	for i := range p.Jobs {
		j := &p.Jobs[i]
		if j.Exec == nil {
			continue
		}
		for _, end := range []struct {
			field, verb string
			ids         []int
		}{{"inputs", "read", j.Inputs}, {"outputs", "write", j.Outputs}} {
			for k, id := range end.ids {
				listed := slices.IndexFunc(p.Pipes, func(pp Pipe) bool { return pp.ID == id })
				if id <= 0 || listed >= 0 && p.Pipes[listed].Codec != "" {
					continue
				}
				path := fmt.Sprintf("%s.%s[%d]", jobPath(i), end.field, k)
				if listed >= 0 {
					path = fmt.Sprintf("pipes[%d]", listed)
				}
				out = append(out, Problem{Path: path, Kind: ProblemWarning, Message: fmt.Sprintf(
					"job %d (%s): pipe %d has no codec, so it is cbor (the default): the program must %s CBOR data items; "+
						`declare it in pipes with "codec": "json" for one JSON value a line, or "bytes" with block_size`,
					j.ID, j.DisplayName(), id, end.verb)})
			}
		}
	}
	return out
}
