package worker

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/deps"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// depsWorker is a worker on a real JetStream server with the dependencies bucket, enough to
// unpack dependencies. Its connection may do on the bucket only what a worker identity may:
// stream info and direct gets (no consumer), and receive on its own inboxes; a refusal fails
// the test. The store returned is on an unrestricted connection.
func depsWorker(t *testing.T) (*Worker, jetstream.ObjectStore) {
	t.Helper()
	obj := "OBJ_" + protocol.DepsBucket
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "w", Password: "w", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{
					"$JS.API.STREAM.INFO." + obj, "$JS.API.DIRECT.GET." + obj, "$JS.API.DIRECT.GET." + obj + ".>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.w.>"}},
			}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)
	admin, err := nats.Connect(ns.ClientURL(), nats.UserInfo("admin", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	ajs, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	store, err := ajs.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: protocol.DepsBucket})
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 16)
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("w", "w"), nats.CustomInboxPrefix("_INBOX.w"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case refused <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		select {
		case err := <-refused:
			t.Errorf("the worker was refused: %v", err)
		default:
		}
	})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	w := &Worker{nc: nc, js: js, opts: Options{WorkDir: t.TempDir()}, log: slog.New(slog.DiscardHandler)}
	return w, store
}

// packFolder packs a folder holding one file, run.sh, with that content.
func packFolder(t *testing.T, content string) ([]byte, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	archive, digest, err := deps.Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	return archive, digest
}

// putChunked stores data under name in chunks of 64 bytes, so it is read back in several.
func putChunked(t *testing.T, store jetstream.ObjectStore, name string, data []byte) {
	t.Helper()
	info, err := store.Put(context.Background(), jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: 64}},
		bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if info.Chunks < 2 {
		t.Fatalf("%s stored in %d chunk(s), want several", name, info.Chunks)
	}
}

// depsCachePath is where w caches the archive named digest.
func depsCachePath(w *Worker, digest string) string {
	return filepath.Join(w.opts.WorkDir, cacheDir, "deps", digest+".tar.gz")
}

func TestDependenciesStoredInChunksAreFetchedWithOnlyAWorkersRightsCachedAndUnpacked(t *testing.T) {
	w, store := depsWorker(t)
	archive, digest := packFolder(t, "echo real\n")
	putChunked(t, store, digest, archive)

	dir := t.TempDir()
	if err := w.unpackDependencies(digest, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "run.sh")); err != nil || string(b) != "echo real\n" {
		t.Fatalf("unpacked run.sh = %q, %v", b, err)
	}
	if b, err := os.ReadFile(depsCachePath(w, digest)); err != nil || !bytes.Equal(b, archive) {
		t.Fatalf("cache holds %d bytes (%v), want the archive's %d", len(b), err, len(archive))
	}
}

func TestFetchedDependenciesWhoseDigestIsNotTheirNameAreRefusedNeitherCachedNorUnpacked(t *testing.T) {
	w, store := depsWorker(t)
	_, asked := packFolder(t, "echo real\n")
	other, got := packFolder(t, "echo replaced\n")
	putChunked(t, store, asked, other) // a valid archive, stored under another's name

	dir := t.TempDir()
	err := w.unpackDependencies(asked, dir)
	want := "dependencies " + asked + ": archive digest is " + got + ", not the name it was fetched by: refused"
	if err == nil || err.Error() != want {
		t.Fatalf("unpackDependencies = %v, want %q", err, want)
	}
	if _, err := os.Stat(depsCachePath(w, asked)); !os.IsNotExist(err) {
		t.Fatalf("cache file of %s: %v, want none", asked, err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("working directory holds %d entries (%v), want none", len(entries), err)
	}
}

func TestACachedArchiveThatIsNotItsNameIsFetchedAgainAndTheCacheRewritten(t *testing.T) {
	w, store := depsWorker(t)
	archive, digest := packFolder(t, "echo real\n")
	putChunked(t, store, digest, archive)
	tampered, _ := packFolder(t, "echo tampered\n")
	cache := depsCachePath(w, digest)
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cache, tampered, 0o644); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if err := w.unpackDependencies(digest, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "run.sh")); err != nil || string(b) != "echo real\n" {
		t.Fatalf("unpacked run.sh = %q, %v; want the stored archive's", b, err)
	}
	if b, err := os.ReadFile(cache); err != nil || !bytes.Equal(b, archive) {
		t.Fatalf("cache holds %d bytes (%v), want the archive's %d", len(b), err, len(archive))
	}
}

func TestDependenciesNamedByWhatIsNotADigestAreRefusedBeforeAnyFileIsTouched(t *testing.T) {
	w, _ := depsWorker(t)
	err := w.unpackDependencies("../../etc", t.TempDir())
	want := `dependencies "../../etc": not a SHA-256 digest: refused`
	if err == nil || err.Error() != want {
		t.Fatalf("unpackDependencies = %v, want %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(w.opts.WorkDir, cacheDir)); !os.IsNotExist(err) {
		t.Fatalf("cache folder: %v, want none", err)
	}
}
