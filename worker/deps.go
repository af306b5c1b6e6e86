package worker

// Job dependencies fetched from the broker's object store, and the jobs' working directories.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/marvelo/marvelo/pipeline/deps"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/objget"
)

// cacheDir is the worker's cache under its working directory: dependency archives and the Python
// package.
const cacheDir = ".marvelo-cache"

// unpackDependencies unpacks a packed dependencies folder into dir, fetching it from the broker's
// object store unless this worker has it already (archives are named by their content). The
// name is the archive's digest end to end: a cached archive that no longer matches it is fetched
// again, and a fetched one that does not match is refused, neither cached nor unpacked.
func (w *Worker) unpackDependencies(digest, dir string) error {
	if !isDigest(digest) {
		return fmt.Errorf("dependencies %q: not a SHA-256 digest: refused", digest)
	}
	cache := filepath.Join(w.opts.WorkDir, cacheDir, "deps", digest+".tar.gz")
	archive, err := os.ReadFile(cache)
	if err == nil {
		if got := deps.Digest(archive); got != digest {
			w.log.Warn("cached dependencies do not match their digest: fetched again", "digest", digest, "got", got, "cache", cache)
			err = errors.New("cache altered")
		}
	}
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if archive, err = w.fetchDependencies(ctx, digest); err != nil {
			return err
		}
		if err := writeFileAtomic(cache, archive); err != nil {
			w.log.Warn("dependencies not cached", "digest", digest, "error", err)
		}
	}
	if err := deps.Unpack(archive, dir); err != nil {
		return fmt.Errorf("unpack dependencies %s: %w", digest, err)
	}
	return nil
}

// fetchDependencies reads the archive named digest from the dependencies bucket with direct gets
// only (a worker may not create consumers), and refuses it unless its SHA-256 is that name.
func (w *Worker) fetchDependencies(ctx context.Context, digest string) ([]byte, error) {
	var archive []byte
	err := untilSettled(ctx, func(ctx context.Context) error {
		var err error
		archive, _, err = objget.GetBytes(ctx, w.nc, protocol.DepsBucket, digest)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fetch dependencies %s: %w", digest, err)
	}
	if got := deps.Digest(archive); got != digest {
		return nil, fmt.Errorf("dependencies %s: archive digest is %s, not the name it was fetched by: refused", digest, got)
	}
	return archive, nil
}

// isDigest tells whether s is a digest as deps.Digest writes it: 64 lower-case hex digits (so it
// is also a safe file name in the cache).
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// writeFileAtomic writes a file through a temporary one, so a crash never leaves half a file
// under the final name.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// execDir is an executable job's own working directory, where its dependencies are unpacked:
// under WorkDir even on a worker whose Go jobs share WorkDir itself.
func (w *Worker) execDir(a *protocol.Assignment) (string, error) {
	dir := filepath.Join(w.opts.WorkDir, a.Pipeline, fmt.Sprint(a.Job.ID))
	if w.opts.SharedWorkDir {
		dir = filepath.Join(w.opts.WorkDir, ".marvelo", a.Pipeline, fmt.Sprint(a.Job.ID))
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	return dir, nil
}

func (w *Worker) jobDir(a *protocol.Assignment) (string, error) {
	if w.opts.SharedWorkDir {
		return w.opts.WorkDir, nil
	}
	dir := filepath.Join(w.opts.WorkDir, a.Pipeline, fmt.Sprint(a.Job.ID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	return dir, nil
}
