// Package jserr says what an error of a NATS or JetStream request means to the one who made it:
// the one place marvelo names JetStream's error codes and decides which failures pass (worth
// another attempt) and which are final.
//
// Both the broker and the worker ask JetStream and must agree. It imports NATS, so it cannot live
// in pipeline/protocol, which must stay free of it; it is a leaf that imports nothing of marvelo,
// which the worker imports as it would a protocol package kept under broker/ (DESIGN.md §2),
// never the broker itself.
package jserr

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream API error codes marvelo acts on: nats.go's constants where it has them, else
// named here after nats-server's (server/errors.json).
const (
	// CodeClusterNotAvailable (the server's JSClusterNotAvailErr, "JetStream system temporarily
	// unavailable"): the cluster has no meta leader right now, as while it elects one.
	CodeClusterNotAvailable jetstream.ErrorCode = 10008
	// CodeClusterNotLeader (JSClusterNotLeaderErr, "JetStream cluster can not handle request"):
	// the server asked is not, or no longer, the leader that can answer.
	CodeClusterNotLeader jetstream.ErrorCode = 10009
	// CodeStreamStoreFailed (JSStreamStoreFailedF): the stream did not store the message; for a
	// pipe's stream, whose discard policy is "new", because it is full ("maximum messages
	// exceeded", "maximum bytes exceeded").
	CodeStreamStoreFailed jetstream.ErrorCode = 10077
	// CodeWrongLastSequence: a publish or KV update that named the sequence (revision) it
	// expected to follow found another one there.
	CodeWrongLastSequence = jetstream.JSErrCodeStreamWrongLastSequence
	// CodeWrongLastSequenceConstant is CodeWrongLastSequence as a replicated stream (R>1)
	// reports it.
	CodeWrongLastSequenceConstant = jetstream.JSErrCodeStreamWrongLastSequenceConstant
)

// Code returns the JetStream API error code err carries, if it carries one.
func Code(err error) (jetstream.ErrorCode, bool) {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode, true
	}
	return 0, false
}

// IsTransient reports whether err is a stall that passes, so that the same request may succeed
// if made again: a cluster without a leader for the moment (CodeClusterNotAvailable,
// CodeClusterNotLeader), or no answer at all (an attempt's deadline or timeout, no responder, no
// response from the stream, missed pull heartbeats) — a broker restarting, a leader being
// elected. Any other JetStream API error is an answer, and final.
func IsTransient(err error) bool {
	if code, ok := Code(err); ok {
		return code == CodeClusterNotAvailable || code == CodeClusterNotLeader
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrNoHeartbeat)
}

// IsStreamFull reports whether a publish was refused because the stream holds all it may
// (CodeStreamStoreFailed): the reader is behind, and the same publish succeeds once it has read.
func IsStreamFull(err error) bool {
	code, ok := Code(err)
	return ok && code == CodeStreamStoreFailed
}

// IsWrongLastSequence reports whether a publish or KV update was refused because the stream (or
// key) moved past the sequence (revision) it named: someone else wrote meanwhile.
func IsWrongLastSequence(err error) bool {
	code, ok := Code(err)
	return ok && (code == CodeWrongLastSequence || code == CodeWrongLastSequenceConstant)
}

// IsGone reports whether err says that the consumer or stream a reader uses is gone (deleted,
// not found) or refuses it (a bad request): reading it again cannot succeed.
func IsGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBadRequest)
}
