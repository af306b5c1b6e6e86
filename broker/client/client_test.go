package client

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/deps"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// depsSetup runs a real embedded NATS server with JetStream and the dependencies bucket, and
// returns a client on it, the bucket, a document whose exec job has the folder "deps" (one
// file), the document's folder and the archive that folder packs to, with its digest.
func depsSetup(t *testing.T) (*Client, jetstream.ObjectStore, *pipeline.Pipeline, string, []byte, string) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: protocol.DepsBucket})
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	folder := filepath.Join(base, "deps")
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, "run.sh"), []byte("echo real\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	archive, digest, err := deps.Pack(folder)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline.Pipeline{Name: "p", Jobs: []pipeline.Job{{ID: 1, Exec: &pipeline.Exec{Path: "./run.sh", Dependencies: "deps"}}}}
	return New(nc), store, p, base, archive, digest
}

func TestUploadDependenciesOverwritesAStoredObjectWhoseDigestIsNotItsName(t *testing.T) {
	c, store, p, base, archive, digest := depsSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := store.PutBytes(ctx, digest, []byte("replaced by someone")); err != nil {
		t.Fatal(err)
	}

	names, err := c.uploadDependencies(ctx, p, base)
	if err != nil {
		t.Fatal(err)
	}
	if names[1] != digest {
		t.Fatalf("job 1's dependencies named %q, want %s", names[1], digest)
	}
	got, err := store.GetBytes(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, archive) {
		t.Fatalf("stored %q (digest %s) under %s, want the archive", got, deps.Digest(got), digest)
	}
}

func TestUploadDependenciesLeavesAStoredObjectWhoseDigestIsItsName(t *testing.T) {
	c, store, p, base, archive, digest := depsSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	before, err := store.PutBytes(ctx, digest, archive)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := c.uploadDependencies(ctx, p, base); err != nil {
		t.Fatal(err)
	}
	after, err := store.GetInfo(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	if after.NUID != before.NUID {
		t.Fatalf("object put again (nuid %s, was %s)", after.NUID, before.NUID)
	}
}
