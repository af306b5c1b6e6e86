package objget

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const bucket = "b"

// startServer runs a real embedded NATS server with JetStream and the object store bucket, and
// returns an admin connection and a reader's: a user allowed only what a worker will be on the
// bucket (stream info and direct gets) and its own inboxes. Any refused publish or subscription
// of the reader fails the test.
func startServer(t *testing.T) (jetstream.ObjectStore, *nats.Conn, *nats.Conn) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "reader", Password: "reader", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{
					"$JS.API.STREAM.INFO.OBJ_" + bucket, Subject(bucket), Subject(bucket) + ".>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.reader.>"}},
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
	refused := make(chan error, 16)
	reader, err := nats.Connect(ns.ClientURL(), nats.UserInfo("reader", "reader"), nats.CustomInboxPrefix("_INBOX.reader"),
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
		reader.Close()
		select {
		case err := <-refused:
			t.Errorf("the reader was refused: %v", err)
		default:
		}
	})
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	store, err := js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	return store, admin, reader
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// decoyReader is the content of an object being put, and before each read it stores a chunk of
// another object (on the same connection, so in between the object's own chunks in the stream).
type decoyReader struct {
	r     io.Reader
	js    jetstream.JetStream
	ctx   context.Context
	count int
}

func (d *decoyReader) Read(p []byte) (int, error) {
	if _, err := d.js.Publish(d.ctx, ChunkSubject(bucket, "decoy"), []byte("not this object")); err != nil {
		return 0, err
	}
	d.count++
	return d.r.Read(p)
}

func TestGetBytesReadsAMultiChunkObjectInterleavedWithAnotherOnesChunksUsingOnlyDirectGets(t *testing.T) {
	store, admin, reader := startServer(t)
	ctx := testContext(t)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	// 600 chunks of 1 KiB and a short one: more than two batches of 256.
	want := make([]byte, 600*1024+17)
	for i := range want {
		want[i] = byte(i*7 + i/1024)
	}
	decoys := &decoyReader{r: bytes.NewReader(want), js: js, ctx: ctx}
	put, err := store.Put(ctx, jetstream.ObjectMeta{Name: "big object", Opts: &jetstream.ObjectMetaOptions{ChunkSize: 1024}}, decoys)
	if err != nil {
		t.Fatal(err)
	}
	if put.Chunks != 601 || decoys.count < 601 {
		t.Fatalf("put %d chunks with %d decoys between them, want 601 and at least as many decoys", put.Chunks, decoys.count)
	}

	got, info, err := GetBytes(ctx, reader, bucket, "big object")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the %d put", len(got), len(want))
	}
	if info.NUID != put.NUID || info.Chunks != 601 || info.Size != uint64(len(want)) || info.Digest != put.Digest {
		t.Fatalf("info %+v, put %+v", info, put)
	}
	if info.ModTime.IsZero() {
		t.Fatal("no modification time from the metadata's stored message")
	}
	st, err := js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Consumers; n != 0 {
		t.Fatalf("%d consumers on the bucket's stream, want none", n)
	}
}

func TestGetBytesOfAnEmptyObjectIsNoBytes(t *testing.T) {
	store, _, reader := startServer(t)
	ctx := testContext(t)
	if _, err := store.PutBytes(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	got, info, err := GetBytes(ctx, reader, bucket, "empty")
	if err != nil || len(got) != 0 || info.Size != 0 || info.Chunks != 0 {
		t.Fatalf("GetBytes = %q, %+v, %v; want no bytes", got, info, err)
	}
}

func TestGetBytesOfAMissingOrDeletedObjectIsErrObjectNotFound(t *testing.T) {
	store, _, reader := startServer(t)
	ctx := testContext(t)
	if _, err := store.PutBytes(ctx, "gone", []byte("soon deleted")); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gone", "never"} {
		if _, _, err := GetBytes(ctx, reader, bucket, name); !errors.Is(err, jetstream.ErrObjectNotFound) {
			t.Errorf("GetBytes(%s) = %v, want %v", name, err, jetstream.ErrObjectNotFound)
		}
	}
}

func TestGetBytesRefusesChunksWhoseDigestIsNotTheMetadatas(t *testing.T) {
	store, admin, reader := startServer(t)
	ctx := testContext(t)
	put, err := store.PutBytes(ctx, "x", []byte("the real content"))
	if err != nil {
		t.Fatal(err)
	}
	// Metadata that claims another digest for the same chunks.
	forged := *put
	forged.Digest = "SHA-256=" + "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="
	data, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, MetaSubject(bucket, "x"), data); err != nil {
		t.Fatal(err)
	}
	if _, _, err := GetBytes(ctx, reader, bucket, "x"); !errors.Is(err, jetstream.ErrDigestMismatch) {
		t.Fatalf("GetBytes = %v, want %v", err, jetstream.ErrDigestMismatch)
	}
}

func TestGetBytesOfAnObjectMissingChunksSaysHowManyOfItsChunksWereFound(t *testing.T) {
	store, admin, reader := startServer(t)
	ctx := testContext(t)
	put, err := store.PutBytes(ctx, "x", []byte("one chunk"))
	if err != nil {
		t.Fatal(err)
	}
	// Metadata that claims a second chunk nobody stored.
	forged := *put
	forged.Chunks, forged.Size = 2, 2*put.Size
	data, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, MetaSubject(bucket, "x"), data); err != nil {
		t.Fatal(err)
	}
	want := "object x in b: 1 of 2 chunks found"
	if _, _, err := GetBytes(ctx, reader, bucket, "x"); err == nil || err.Error() != want {
		t.Fatalf("GetBytes = %v, want %q", err, want)
	}
}
