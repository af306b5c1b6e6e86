package access

import (
	"sort"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// WorkerPermissions are what a worker identity may do while the given assignments are placed on
// it: its own control subjects always, the subjects of the groups it registered with (groups:
// protocol.WorkerInfo.GroupSubjects, to hear offers and announcements), the subjects of its jobs'
// pipes, logs and checkpoints while they run there, and no JetStream API that creates, changes,
// deletes or purges.
func WorkerPermissions(name string, groups []string, grants []protocol.Assignment) *server.Permissions {
	pub := []string{
		protocol.From(protocol.SubjRegister, name), protocol.From(protocol.SubjDeregister, name),
		protocol.From(protocol.SubjJobState, name), protocol.From(protocol.SubjHeartbeatPrefix, name),
		protocol.From(protocol.SubjLeave, name), // lifecycle (issue 11): drained on SIGTERM
		protocol.JSAPIInfo, protocol.AllUnder(protocol.BrokerInboxPrefix),
		protocol.JSStreamInfo(protocol.KVStream(protocol.CheckpointBucket)),
		// Dependencies: the object store's metadata and chunks, read by direct gets only (no
		// consumer: its deliver subject could name any subject of the global account).
		protocol.JSStreamInfo(protocol.ObjectStream(protocol.DepsBucket)),
		protocol.JSDirectGet(protocol.ObjectStream(protocol.DepsBucket)),
		protocol.AllUnder(protocol.JSDirectGet(protocol.ObjectStream(protocol.DepsBucket))),
	}
	sub := []string{
		protocol.WorkerSubject(name, ">"), protocol.AllUnder(protocol.InboxPrefix(name)),
	}
	sub = append(sub, groups...)
	for _, g := range grants {
		pub = append(pub, protocol.LogSubject(g.Pipeline, g.Job.ID))
		key := protocol.CheckpointKey(g.Pipeline, g.Job.ID)
		pub = append(pub, protocol.KVKeySubject(protocol.CheckpointBucket, key),
			protocol.JSDirectGetLast(protocol.KVStream(protocol.CheckpointBucket), protocol.KVKeySubject(protocol.CheckpointBucket, key)))
		sub = append(sub, protocol.StdinSubject(g.Pipeline, g.Job.ID))
		for _, o := range g.Outputs {
			pub = append(pub, o.Subject)
			if o.Realtime {
				continue
			}
			pub = append(pub, protocol.JSStreamInfo(o.Stream), protocol.JSStreamMsgGet(o.Stream),
				protocol.JSDirectGet(o.Stream), protocol.AllUnder(protocol.JSDirectGet(o.Stream)))
		}
		for _, in := range g.Inputs {
			if in.Realtime {
				sub = append(sub, in.Subject, protocol.RealtimeRelaySubject(in.Subject))
				continue
			}
			pub = append(pub, protocol.JSStreamInfo(in.Stream),
				protocol.JSStreamMsgGet(in.Stream), // a delivery lost in transit, read from the stream (worker/input.go)
				protocol.JSConsumerInfo(in.Stream, in.Consumer),
				protocol.JSMsgNext(in.Stream, in.Consumer),
				protocol.JSAcks(in.Stream, in.Consumer))
		}
	}
	sort.Strings(pub)
	sort.Strings(sub)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: dedup(pub)},
		Subscribe: &server.SubjectPermission{Allow: dedup(sub)},
		// No Response permission for the answers to the broker's requests: the server forgets
		// the requests it let through whenever it applies new permissions, so an answer in flight
		// across a grant would be refused. They go to BrokerInboxPrefix instead.
	}
}

// ReaderPermissions: status, workers, logs and top, nothing that changes anything. The log
// stream is read by direct gets: no consumer, whose deliver subject could name any subject.
func ReaderPermissions(name string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			protocol.SubjStatus, protocol.SubjWorkers, protocol.JSAPIInfo,
			protocol.LogStreamInfoSubject,
			protocol.LogDirectGetSubject,
			protocol.AllUnder(protocol.LogDirectGetSubject),
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			protocol.AllUnder(protocol.InboxPrefix(name)), protocol.From(protocol.SubjHeartbeatPrefix, "*"), protocol.EventSubject("*"),
			protocol.LogSubjects, // woken by live lines when following (broker/client/logs.go)
		}},
	}
}

// dedup drops the repeats of a sorted list, in place.
func dedup(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
