package xmlimport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

const fixtures = "../../testdata/xml"

func convertFile(t *testing.T, name string, opts Options) (*pipeline.Pipeline, error) {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Convert(f, opts)
}

// SPEC XML1 (§9.7): nodes 192.168.4.1…4 hold 2, 2, 1 and 1 jobs; job i has dependencies "i" and
// executable "exe<i>"; parameters "param<i>" (job 5 none); pipe 1 has block count 5, every other
// 1; every pipe's block size is id × 10. The original's tests read the node address from "ip".
func TestAValidNetworkXMLGivesEachNodeItsJobsWithTheirExecutablesParamsAndPipes(t *testing.T) {
	p, err := convertFile(t, "network_valid.xml", Options{IPAttr: "ip", Name: "network_valid"})
	if err != nil {
		t.Fatal(err)
	}
	perNode := map[string]int{}
	for _, j := range p.Jobs {
		perNode[j.Node]++
	}
	for node, n := range map[string]int{"192.168.4.1": 2, "192.168.4.2": 2, "192.168.4.3": 1, "192.168.4.4": 1} {
		if perNode[node] != n {
			t.Errorf("node %s holds %d jobs, want %d", node, perNode[node], n)
		}
	}
	if len(perNode) != 4 || len(p.Jobs) != 6 {
		t.Errorf("%d nodes, %d jobs: %v", len(perNode), len(p.Jobs), perNode)
	}
	for i, j := range p.Jobs {
		id := i + 1
		if j.ID != id || j.Exec == nil || j.Type != "" {
			t.Fatalf("job %d: %+v", id, j)
		}
		e := j.Exec
		if e.Dependencies != fmt.Sprint(id) || e.Path != fmt.Sprintf("exe%d", id) || e.Mode != pipeline.ModeFD {
			t.Errorf("job %d: exec %+v", id, e)
		}
		want := []string{fmt.Sprintf("param%d", id)}
		if id == 5 {
			want = nil
		}
		if !slices.Equal(e.Params, want) {
			t.Errorf("job %d: params %q, want %q", id, e.Params, want)
		}
		if j.Head || len(j.Groups) != 0 {
			t.Errorf("job %d: head %v, groups %v; want no head, group ALL", id, j.Head, j.Groups)
		}
	}
	if len(p.Pipes) != 6 {
		t.Fatalf("%d pipes: %+v", len(p.Pipes), p.Pipes)
	}
	for _, pp := range p.Pipes {
		if pp.Codec != "bytes" || pp.BlockSize != pp.ID*10 {
			t.Errorf("pipe %d: codec %s, block size %d, want bytes, %d", pp.ID, pp.Codec, pp.BlockSize, pp.ID*10)
		}
		want := 1
		if pp.ID == 1 {
			want = 5
		}
		if pp.EffectiveBlockCount() != want {
			t.Errorf("pipe %d: block count %d, want %d", pp.ID, pp.EffectiveBlockCount(), want)
		}
	}
	// Inputs and outputs by pipe id, in document order.
	j1, j6 := p.JobByID(1), p.JobByID(6)
	if !slices.Equal(j1.Outputs, []int{1, 6}) || len(j1.Inputs) != 0 || !slices.Equal(j6.Inputs, []int{5, 6}) || len(j6.Outputs) != 0 {
		t.Errorf("job 1 %v→%v, job 6 %v→%v", j1.Inputs, j1.Outputs, j6.Inputs, j6.Outputs)
	}
	// The result is a valid pipeline document.
	if err := pipeline.Validate(p, pipeline.ValidateOptions{}); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// With the default attribute (pi_id), the nodes have no address.
	if _, err := convertFile(t, "network_valid.xml", Options{}); err == nil || !strings.Contains(err.Error(), "line 7: node <node> has no pi_id attribute") {
		t.Errorf("default ip attribute: %v", err)
	}
}

// XML-2 … XML-5: the loader's errors, with the original's messages.
func TestXMLErrors(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"network_two_sources.xml", "network_two_sources.xml:6: Source of pipe 1 was defined multiple times."},
		{"network_two_destinations.xml", "network_two_destinations.xml:7: Destination of pipe 1 was defined multiple times."},
		{"network_block_sizes.xml", "network_block_sizes.xml:6: Multiple block sizes are set for pipe 1."},
		{"network_block_counts.xml", "network_block_counts.xml:6: Multiple block counts are set for pipe 1."},
	} {
		_, err := convertFile(t, c.file, Options{IPAttr: "ip", File: c.file})
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.file, err, c.want)
		}
	}
}

func convert(t *testing.T, xml string, opts Options) (*pipeline.Pipeline, error) {
	t.Helper()
	return Convert(strings.NewReader(xml), opts)
}

func TestConvertDetails(t *testing.T) {
	// The executable's words and each parameter's words become params, in order; other
	// attributes and tags are ignored; missing sizes and counts are 1.
	p, err := convert(t, `<net><n pi_id="10.0.0.1" x="y"><j executable="python3  sum.py -v" path="sum">
		<parameter param="--scale 2"/><ignored/><parameter param="x"/>
		<output pipe_id="7"/></j></n>
		<n pi_id="10.0.0.2"><j executable="./sink"><input pipe_id="7" block_size="1"><deeper pipe_id="9"/></input></j></n></net>`, Options{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	j := p.Jobs[0]
	if j.Exec.Path != "python3" || !slices.Equal(j.Exec.Params, []string{"sum.py", "-v", "--scale", "2", "x"}) || j.Exec.Dependencies != "sum" || j.Node != "10.0.0.1" {
		t.Errorf("job 1: %+v %+v", j, j.Exec)
	}
	if p.Jobs[1].Exec.Dependencies != "" || p.Jobs[1].Node != "10.0.0.2" {
		t.Errorf("job 2: %+v", p.Jobs[1])
	}
	if len(p.Pipes) != 1 || !samePipe(p.Pipes[0], pipeline.Pipe{ID: 7, Codec: "bytes", BlockSize: 1}) {
		t.Errorf("pipes %+v", p.Pipes)
	}
	if p.Name != "x" {
		t.Errorf("name %q", p.Name)
	}
	if p, _ := convert(t, `<a><b pi_id="h"><c executable="e"/></b></a>`, Options{}); p == nil || p.Name != DefaultName {
		t.Errorf("default name: %+v", p)
	}

	// One end giving a size and the other none is a conflict (a missing value is 1).
	_, err = convert(t, `<a><b pi_id="h"><c executable="e"><output pipe_id="1" block_size="10"/></c><d executable="f"><input pipe_id="1"/></d></b></a>`, Options{})
	if err == nil || err.Error() != "line 1: Multiple block sizes are set for pipe 1." {
		t.Errorf("implicit 1: %v", err)
	}

	// Every problem at once, in document order.
	_, err = convert(t, `<a>
<b pi_id="h">
<c executable="e"><output pipe_id="1" block_size="0"/><input pipe_id="1"/></c>
<d><output pipe_id="x"/><input pipe_id="2" block_count="-3"/><parameter/></d>
</b>
<b><c executable="f"/></b>
</a>`, Options{File: "t.xml"})
	want := []string{
		`t.xml:3: job 1 (e): pipe 1: block_size must be a positive integer, got "0"`,
		`t.xml:3: PIPE 1: You can't loop back pipes to same job (job 1 (e)).`,
		`t.xml:4: job 2 (<d>) has no executable attribute`,
		`t.xml:4: job 2 (job): pipe_id "x" is not a positive integer`,
		`t.xml:4: job 2 (job): pipe 2: block_count must be a positive integer, got "-3"`,
		`t.xml:4: job 2 (job): <parameter> has no param attribute`,
		`t.xml:6: node <b> has no pi_id attribute (its address; choose the attribute with --ip-attr)`,
	}
	var xe *Error
	if err == nil || !errorsAs(err, &xe) || !slices.Equal(xe.Problems, want) {
		t.Errorf("problems:\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}

	// Not XML, and XML without jobs.
	if _, err := convert(t, `<a><b pi_id="h">`, Options{File: "t.xml"}); err == nil || !strings.HasPrefix(err.Error(), "t.xml:1: not a valid XML topology: ") {
		t.Errorf("truncated XML: %v", err)
	}
	if _, err := convert(t, `<a/>`, Options{}); err == nil || !strings.Contains(err.Error(), "no jobs") {
		t.Errorf("no jobs: %v", err)
	}

	// Other attribute and tag names.
	p, err = convert(t, `<r><node addr="h"><job cmd="run" dir="d"><arg v="1"/><in id="3" size="4" count="2"/></job></node></r>`,
		Options{IPAttr: "addr", ExecutableAttr: "cmd", PathAttr: "dir", InputTag: "in", OutputTag: "out", PipeAttr: "id",
			ParameterTag: "arg", ParamAttr: "v", BlockSizeAttr: "size", BlockCountAttr: "count"})
	if err != nil {
		t.Fatal(err)
	}
	if j := p.Jobs[0]; j.Node != "h" || j.Exec.Path != "run" || j.Exec.Dependencies != "d" || !slices.Equal(j.Exec.Params, []string{"1"}) ||
		!slices.Equal(j.Inputs, []int{3}) || !samePipe(p.Pipes[0], pipeline.Pipe{ID: 3, Codec: "bytes", BlockSize: 4, BlockCount: 2}) {
		t.Errorf("custom names: %+v %+v %+v", j, j.Exec, p.Pipes)
	}
}

func TestNameFromFile(t *testing.T) {
	for in, want := range map[string]string{
		"network_valid.xml":              "network_valid",
		"/a/b/my topology.v2.xml":        "my_topology_v2",
		"x":                              "x",
		".xml":                           DefaultName,
		"":                               DefaultName,
		strings.Repeat("n", 70) + ".xml": strings.Repeat("n", 64),
	} {
		if got := NameFromFile(in); got != want {
			t.Errorf("NameFromFile(%q) = %q, want %q", in, got, want)
		}
	}
}

func errorsAs(err error, target **Error) bool { return errors.As(err, target) }

func samePipe(a, b pipeline.Pipe) bool {
	return a.ID == b.ID && a.Codec == b.Codec && a.BlockSize == b.BlockSize && a.BlockCount == b.BlockCount &&
		!a.Async && a.Optional == nil && a.FromTypes == nil && a.ToTypes == nil
}
