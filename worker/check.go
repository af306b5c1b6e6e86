package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/worker/pyjob"
)

// The checks of a pipeline document that `validate` makes, in every worker binary (package
// worker/command) and in marvelo: the document against the job types, and the files it names.

// CheckResult is what validate --json prints.
type CheckResult struct {
	File     string             `json:"file"`
	OK       bool               `json:"ok"`
	Jobs     int                `json:"jobs"`
	Pipes    int                `json:"pipes"`
	Problems []pipeline.Problem `json:"problems"`
	// Warnings are allowed but likely not meant (pipeline.Notes): they leave OK true.
	Warnings []pipeline.Problem `json:"warnings,omitempty"`
}

// CheckDocument checks a document: pipeline.Check with opts, then the files it names
// (CheckFiles), and the warnings (pipeline.Notes); the files' problems and the warnings are
// located in data (pipeline.Locate). The error is the Check error, or a *pipeline.ValidationError of the files'
// problems; the result is filled either way (OK false on an error).
func CheckDocument(name string, data []byte, opts pipeline.ValidateOptions) (CheckResult, error) {
	p, err := pipeline.Check(data, opts)
	res := CheckResult{File: name, OK: err == nil, Problems: []pipeline.Problem{}}
	if p != nil {
		res.Jobs, res.Pipes = len(p.Jobs), countPipes(p)
	}
	if err != nil {
		res.Problems = ProblemsOf(err)
	}
	if files := CheckFiles(name, p); len(files) > 0 {
		pipeline.Locate(data, files)
		res.Problems = append(res.Problems, files...)
		res.OK = false
		if err == nil {
			err = &pipeline.ValidationError{Problems: files}
		}
	}
	if p != nil {
		res.Warnings = pipeline.Notes(p)
		pipeline.Locate(data, res.Warnings)
	}
	return res, err
}

// countPipes counts distinct pipes, used by a job or only listed.
func countPipes(p *pipeline.Pipeline) int {
	ids := map[int]bool{}
	for _, j := range p.Jobs {
		for _, id := range append(append([]int(nil), j.Inputs...), j.Outputs...) {
			ids[id] = true
		}
	}
	for _, pp := range p.Pipes {
		ids[pp.ID] = true
	}
	return len(ids)
}

// CheckFiles checks what the document in the file name names on disk, relative to the
// document's folder, as far as it can be checked here (nothing for a document read from standard
// input): a Python job's dependencies folder and module (pyjob.CheckFiles), an executable job's
// dependencies folder and program (checkExecFiles). Each problem has kind files and names job,
// key and file.
func CheckFiles(name string, p *pipeline.Pipeline) []pipeline.Problem {
	if p == nil || name == "-" || name == "<stdin>" {
		return nil
	}
	var out []pipeline.Problem
	for i := range p.Jobs {
		out = append(out, pyjob.CheckFiles(filepath.Dir(name), &p.Jobs[i], i)...)
		out = append(out, checkExecFiles(filepath.Dir(name), &p.Jobs[i], i)...)
	}
	return out
}

// checkExecFiles checks an executable job's files here, as the job will find them: its
// dependencies folder (relative to the document) exists and holds the program; without one, a
// relative program is beside the document (where marvelo run looks for it); a program found
// here is executable and its #! interpreter is present (programReady, what a worker's bid
// checks too). A program on PATH or at an absolute path that is not here may be on the workers:
// not a problem.
func checkExecFiles(baseDir string, j *pipeline.Job, index int) []pipeline.Problem {
	e := j.Exec
	if e == nil || e.Path == "" {
		return nil // the graph check names a missing path
	}
	path := fmt.Sprintf("jobs[%d].exec", index)
	label := fmt.Sprintf("job %d (%s)", j.ID, j.DisplayName())
	problem := func(key, format string, args ...any) []pipeline.Problem {
		return []pipeline.Problem{{Path: path + "." + key, Kind: pipeline.ProblemFiles, Message: label + ": " + fmt.Sprintf(format, args...)}}
	}
	if abs, err := filepath.Abs(baseDir); err == nil {
		baseDir = abs // the messages name whole paths
	}
	dir := baseDir // without dependencies, marvelo run looks beside the document
	if e.Dependencies != "" {
		dir = e.Dependencies
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(baseDir, dir)
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return problem("dependencies", "dependencies folder %s can't be found or isn't a directory", dir)
		}
	}
	local := programHere(e, dir)
	switch {
	case local == "" && filepath.IsAbs(e.Path), local == "" && !strings.ContainsRune(e.Path, '/'):
		return nil // on the workers' machines, maybe
	case local == "" && e.Dependencies != "":
		return problem("path", "%s is not in the dependencies folder: %s does not exist", e.Path, filepath.Join(dir, e.Path))
	case local == "":
		return problem("path", `%s is not beside the document: %s does not exist; put it there, or give the job "dependencies" `+
			"(the folder holding it, relative to the document), or an absolute path", e.Path, filepath.Join(dir, e.Path))
	}
	if err := programReady(local, local); err != nil {
		return problem("path", "%v", err)
	}
	return nil
}

// ProblemsOf lists the problems of a Parse, Validate or Check error.
func ProblemsOf(err error) []pipeline.Problem {
	var de *pipeline.DocumentError
	var ve *pipeline.ValidationError
	switch {
	case errors.As(err, &de):
		return de.Problems
	case errors.As(err, &ve):
		return ve.Problems
	}
	return []pipeline.Problem{{Message: err.Error()}}
}

// PrefixProblems names the file on every line of a Parse, Validate or Check error: one line per
// problem, "name: path: message (line L, column C)".
func PrefixProblems(name string, err error) error {
	var lines []string
	for _, p := range ProblemsOf(err) {
		for _, l := range strings.Split(p.Located(), "\n") {
			lines = append(lines, name+": "+l)
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}
