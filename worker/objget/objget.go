// Package objget reads objects of a JetStream object store with direct get requests only: no
// consumer is created, so a client may read a bucket with nothing but the right to publish to
// `$JS.API.DIRECT.GET.OBJ_<bucket>` (and to receive its replies on its own inbox).
//
// It mirrors how nats.go's object store (jetstream/object.go) lays out an object: the stream
// OBJ_<bucket> holds, on `$O.<bucket>.M.<base64url(name)>`, the object's metadata (the JSON of
// jetstream.ObjectInfo, the last message on that subject wins), and on `$O.<bucket>.C.<nuid>`
// its chunks in order, where nuid is the metadata's NUID. An object whose metadata says Deleted
// is not found. The bytes read are checked against the metadata: number of chunks, size, and
// Digest ("SHA-256=<base64url of the SHA-256>").
//
// The metadata is read with {"last_by_subj": meta subject}; the chunks with batches of
// {"seq": N, "next_by_subj": chunk subject, "batch": K, "max_bytes": B}, each answered by up to
// K messages in stream order and an end-of-batch status (204), or a 404 when none is left.
package objget

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

const (
	// batchChunks and batchBytes bound one batch request: the reply never overruns the
	// subscription's pending limits (64 MiB by default), whatever the chunk size.
	batchChunks = 256
	batchBytes  = 8 << 20
	// maxPrealloc bounds what the metadata's Size alone may make us allocate.
	maxPrealloc = 64 << 20
	// statusHdr and descrHdr are the headers nats.go parses a status line into.
	statusHdr = "Status"
	descrHdr  = "Description"
)

// Subject returns the subject direct get requests on bucket are published to: the one the
// broker grants a worker for the dependencies (protocol builds both).
func Subject(bucket string) string { return protocol.JSDirectGet(protocol.ObjectStream(bucket)) }

// MetaSubject returns the subject of an object's metadata, as nats.go writes it.
func MetaSubject(bucket, name string) string {
	return "$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
}

// ChunkSubject returns the subject of the chunks of the object put with nuid.
func ChunkSubject(bucket, nuid string) string { return "$O." + bucket + ".C." + nuid }

// request is the body of a direct get request (the server's JSApiMsgGetRequest).
type request struct {
	Seq      uint64 `json:"seq,omitempty"`
	LastFor  string `json:"last_by_subj,omitempty"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// GetInfo returns the metadata of the object name in bucket; jetstream.ErrObjectNotFound when
// there is none or it is marked deleted.
func GetInfo(ctx context.Context, nc *nats.Conn, bucket, name string) (*jetstream.ObjectInfo, error) {
	if name == "" {
		return nil, jetstream.ErrNameRequired
	}
	body, err := json.Marshal(request{LastFor: MetaSubject(bucket, name)})
	if err != nil {
		return nil, err
	}
	m, err := nc.RequestWithContext(ctx, Subject(bucket), body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("object %s in %s: %w (no stream OBJ_%s allowing direct get)", name, bucket, err, bucket)
		}
		return nil, fmt.Errorf("object %s in %s: %w", name, bucket, err)
	}
	if err := status(m); err != nil {
		if errors.Is(err, errNoMessage) {
			return nil, jetstream.ErrObjectNotFound
		}
		return nil, fmt.Errorf("object %s in %s: metadata: %w", name, bucket, err)
	}
	if s := m.Header.Get(jetstream.SubjectHeader); s != MetaSubject(bucket, name) {
		return nil, fmt.Errorf("object %s in %s: metadata answered with subject %q", name, bucket, s)
	}
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return nil, fmt.Errorf("object %s in %s: %w: %v", name, bucket, jetstream.ErrBadObjectMeta, err)
	}
	if info.Deleted {
		return nil, jetstream.ErrObjectNotFound
	}
	if ts := m.Header.Get(jetstream.TimeStampHeaer); ts != "" {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			info.ModTime = t
		}
	}
	return &info, nil
}

// GetBytes returns the content of the object name in bucket and its metadata, read with direct
// gets only and checked against the metadata (chunks, size, digest). ctx bounds the whole read:
// give it a deadline. A link is refused (jetstream.ErrCantGetBucket for a bucket link, an error
// naming the target otherwise): following it would read where the caller did not ask.
func GetBytes(ctx context.Context, nc *nats.Conn, bucket, name string) ([]byte, *jetstream.ObjectInfo, error) {
	info, err := GetInfo(ctx, nc, bucket, name)
	if err != nil {
		return nil, nil, err
	}
	if o := info.Opts; o != nil && o.Link != nil {
		if o.Link.Name == "" {
			return nil, nil, fmt.Errorf("object %s in %s: %w", name, bucket, jetstream.ErrCantGetBucket)
		}
		return nil, nil, fmt.Errorf("object %s in %s is a link to %s in %s: not followed", name, bucket, o.Link.Name, o.Link.Bucket)
	}
	// The NUID becomes a subject token: anything but one plain token would make the chunk
	// subject a wildcard, or another object's.
	if info.NUID == "" || strings.ContainsAny(info.NUID, ".*> \t\r\n") {
		return nil, nil, fmt.Errorf("object %s in %s: %w: nuid %q", name, bucket, jetstream.ErrBadObjectMeta, info.NUID)
	}
	if (info.Chunks == 0) != (info.Size == 0) {
		return nil, nil, fmt.Errorf("object %s in %s: %w: %d bytes in %d chunks", name, bucket, jetstream.ErrBadObjectMeta, info.Size, info.Chunks)
	}
	want, err := jetstream.DecodeObjectDigest(info.Digest)
	if err != nil {
		return nil, nil, fmt.Errorf("object %s in %s: digest %q: %w", name, bucket, info.Digest, err)
	}
	h := sha256.New()
	data := make([]byte, 0, min(info.Size, maxPrealloc))
	if info.Chunks > 0 {
		if data, err = readChunks(ctx, nc, bucket, info, data); err != nil {
			return nil, nil, fmt.Errorf("object %s in %s: %w", name, bucket, err)
		}
	}
	h.Write(data)
	if uint64(len(data)) != info.Size {
		return nil, nil, fmt.Errorf("object %s in %s: %d bytes read, the metadata says %d", name, bucket, len(data), info.Size)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return nil, nil, fmt.Errorf("object %s in %s: %w (read %s, metadata %s)", name, bucket, jetstream.ErrDigestMismatch,
			jetstream.GetObjectDigestValue(h), info.Digest)
	}
	return data, info, nil
}

// readChunks appends the object's chunks to data, in stream order, in batches on one inbox.
func readChunks(ctx context.Context, nc *nats.Conn, bucket string, info *jetstream.ObjectInfo, data []byte) ([]byte, error) {
	subj := ChunkSubject(bucket, info.NUID)
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	var got uint32
	seq := uint64(1)
	for got < info.Chunks {
		body, err := json.Marshal(request{Seq: seq, NextFor: subj, Batch: int(min(info.Chunks-got, batchChunks)), MaxBytes: batchBytes})
		if err != nil {
			return nil, err
		}
		if err := nc.PublishRequest(Subject(bucket), inbox, body); err != nil {
			return nil, err
		}
		// One batch: chunks, then the end-of-batch status, or a 404 when not one chunk was left.
		for n := 0; ; n++ {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return nil, fmt.Errorf("chunk %d of %d: %w", got+1, info.Chunks, err)
			}
			if len(m.Data) == 0 && m.Header.Get(statusHdr) != "" {
				if m.Header.Get(statusHdr) == "204" { // end of batch
					if n == 0 {
						return nil, fmt.Errorf("chunk %d of %d: an empty batch", got+1, info.Chunks)
					}
					break
				}
				if err := status(m); errors.Is(err, errNoMessage) {
					return nil, fmt.Errorf("%d of %d chunks found", got, info.Chunks)
				} else if err != nil {
					return nil, fmt.Errorf("chunk %d of %d: %w", got+1, info.Chunks, err)
				}
			}
			if s := m.Header.Get(jetstream.SubjectHeader); s != subj {
				return nil, fmt.Errorf("chunk %d of %d: answered with subject %q", got+1, info.Chunks, s)
			}
			s, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil || s < seq {
				return nil, fmt.Errorf("chunk %d of %d: sequence %q, asked from %d", got+1, info.Chunks, m.Header.Get(jetstream.SequenceHeader), seq)
			}
			if got == info.Chunks || uint64(len(data))+uint64(len(m.Data)) > info.Size {
				return nil, fmt.Errorf("more than the %d chunks and %d bytes the metadata says", info.Chunks, info.Size)
			}
			data = append(data, m.Data...)
			got++
			seq = s + 1
		}
	}
	return data, nil
}

// errNoMessage is a direct get's 404: no message matched.
var errNoMessage = errors.New("no message")

// status returns the error a direct get reply's status carries: errNoMessage for 404, nil for
// a message (a reply with data, or without a status).
func status(m *nats.Msg) error {
	code := m.Header.Get(statusHdr)
	if len(m.Data) > 0 || code == "" {
		return nil
	}
	switch code {
	case "404":
		return errNoMessage
	case "503":
		return nats.ErrNoResponders
	}
	desc := m.Header.Get(descrHdr)
	if desc == "" {
		desc = "direct get failed"
	}
	return fmt.Errorf("status %s: %s", code, desc)
}
