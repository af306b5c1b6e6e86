package pyjob

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/marvelo/marvelo/pipeline"
)

// CheckFiles checks, where the document is (baseDir, its folder), what a Python job names: its
// dependencies folder exists, and its class's module is a file in it (module.py, or a package's
// __init__.py). Without a dependencies folder the module may be installed on the workers, so
// nothing is checked. index is the job's place in the document, for the problems' paths.
func CheckFiles(baseDir string, j *pipeline.Job, index int) []pipeline.Problem {
	py := j.Python
	if py == nil || py.Dependencies == "" {
		return nil
	}
	path := fmt.Sprintf("jobs[%d].python", index)
	label := fmt.Sprintf("job %d (%s)", j.ID, j.DisplayName())
	dir := py.Dependencies
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(baseDir, dir)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return []pipeline.Problem{{Path: path + ".dependencies", Kind: pipeline.ProblemFiles,
			Message: fmt.Sprintf("%s: dependencies folder %s can't be found or isn't a directory", label, dir)}}
	}
	module, _, ok := strings.Cut(py.Class, ":")
	if !ok || module == "" {
		return nil // the graph check names a malformed class
	}
	rel := filepath.Join(strings.Split(module, ".")...)
	for _, f := range []string{rel + ".py", filepath.Join(rel, "__init__.py")} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil
		}
	}
	return []pipeline.Problem{{Path: path + ".class", Kind: pipeline.ProblemFiles,
		Message: fmt.Sprintf("%s: module %s of class %s is not in the dependencies folder %s (looked for %s.py and %s)",
			label, module, py.Class, dir, rel, filepath.Join(rel, "__init__.py"))}}
}
