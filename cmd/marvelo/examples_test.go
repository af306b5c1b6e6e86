package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/local"
)

// TestShippedPipelinesRunToTheirEnd runs every document under testdata/pipelines/ (JSON and
// CBOR) with marvelo run: each finishes. A document whose name says "endless" is run for a
// while and stopped instead.
func TestShippedPipelinesRunToTheirEnd(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(fixtures, "*"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no documents under %s: %v", fixtures, err)
	}
	for _, doc := range docs {
		if ext := filepath.Ext(doc); ext != ".json" && ext != ".cbor" {
			continue
		}
		t.Run(filepath.Base(doc), func(t *testing.T) {
			if strings.Contains(filepath.Base(doc), "endless") {
				runEndless(t, doc)
				return
			}
			r := runApp(t, "run", doc, "--workdir", t.TempDir())
			if r.code != 0 || !strings.Contains(r.stderr, "finished") {
				t.Errorf("marvelo run %s: exit %d\nstdout:\n%s\nstderr:\n%s", doc, r.code, r.stdout, r.stderr)
			}
		})
	}
}

func runEndless(t *testing.T, doc string) {
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = local.Run(ctx, data, local.Options{Registry: registry, WorkDir: t.TempDir(), BaseDir: filepath.Dir(doc)})
	if ctx.Err() == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
		t.Errorf("an endless pipeline ended on its own or failed: %v", err)
	}
}
