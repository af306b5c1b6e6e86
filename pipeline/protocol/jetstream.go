package protocol

// The JetStream subjects marvelo asks on, grants and denies: the JetStream API ($JS.API.…),
// acknowledgements ($JS.ACK.…), and the subjects of key-value buckets ($KV.…) and object stores
// ($O.…), spelled as nats-server defines them (its JSApi…T templates; broker/permissions_test.go
// checks each against them). The broker's permissions (broker/access.go, auth.go) are built from
// these alone, so a rename here changes the rights in one place, where the permission tests see
// it. This file names subjects only: pipeline/protocol imports no NATS.

const (
	jsAPIPrefix      = "$JS.API."
	jsStreamInfo     = jsAPIPrefix + "STREAM.INFO."
	jsStreamMsgGet   = jsAPIPrefix + "STREAM.MSG.GET."
	jsDirectGet      = jsAPIPrefix + "DIRECT.GET."
	jsConsumerInfo   = jsAPIPrefix + "CONSUMER.INFO."
	jsConsumerNext   = jsAPIPrefix + "CONSUMER.MSG.NEXT."
	jsAckPrefix      = "$JS.ACK."
	kvSubjectPrefix  = "$KV."
	objSubjectPrefix = "$O."
)

// JSAPIInfo is the JetStream API request for the account's JetStream information; every
// JetStream client may make it.
const JSAPIInfo = jsAPIPrefix + "INFO"

// AllUnder is the wildcard of every subject below prefix: prefix + ".>" (not prefix itself).
func AllUnder(prefix string) string { return prefix + ".>" }

// KVStream is the stream that holds the key-value bucket bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// ObjectStream is the stream that holds the object store bucket.
func ObjectStream(bucket string) string { return "OBJ_" + bucket }

// KVKeySubject is the subject of one key of a key-value bucket: a put publishes there.
func KVKeySubject(bucket, key string) string { return kvSubjectPrefix + bucket + "." + key }

// KVSubjects matches the subject of every key of a key-value bucket.
func KVSubjects(bucket string) string { return AllUnder(kvSubjectPrefix + bucket) }

// ObjectSubjects matches every subject of an object store bucket: its objects' metadata and
// chunks.
func ObjectSubjects(bucket string) string { return AllUnder(objSubjectPrefix + bucket) }

// JSStreamInfo is the JetStream API request for a stream's information.
func JSStreamInfo(stream string) string { return jsStreamInfo + stream }

// JSStreamMsgGet is the JetStream API request for one message of a stream, answered by its
// leader.
func JSStreamMsgGet(stream string) string { return jsStreamMsgGet + stream }

// JSDirectGet is the direct get request of a stream (a message by sequence, or the next ones for
// a subject), answered by any of its replicas; the stream must allow direct gets.
func JSDirectGet(stream string) string { return jsDirectGet + stream }

// JSDirectGetLast is the direct get request for the last message of a stream on subject.
func JSDirectGetLast(stream, subject string) string { return JSDirectGet(stream) + "." + subject }

// JSConsumerInfo is the JetStream API request for a consumer's information.
func JSConsumerInfo(stream, consumer string) string {
	return jsConsumerInfo + stream + "." + consumer
}

// JSMsgNext is the pull request of a consumer: the next messages it delivers.
func JSMsgNext(stream, consumer string) string { return jsConsumerNext + stream + "." + consumer }

// JSAcks matches the acknowledgement subjects of every message a consumer delivers.
func JSAcks(stream, consumer string) string { return AllUnder(jsAckPrefix + stream + "." + consumer) }

// JSStreamLeaderStepDown is the JetStream API request that makes a stream's leader step down.
func JSStreamLeaderStepDown(stream string) string {
	return jsAPIPrefix + "STREAM.LEADER.STEPDOWN." + stream
}

// JSConsumerLeaderStepDown is the JetStream API request that makes a consumer's leader step
// down.
func JSConsumerLeaderStepDown(stream, consumer string) string {
	return jsAPIPrefix + "CONSUMER.LEADER.STEPDOWN." + stream + "." + consumer
}

// JSChangingAPI matches the JetStream API requests that create, change, delete or purge a
// stream, delete one of its messages, or create a durable consumer: what a worker may never do.
func JSChangingAPI() []string {
	return []string{
		AllUnder(jsAPIPrefix + "STREAM.CREATE"), AllUnder(jsAPIPrefix + "STREAM.UPDATE"),
		AllUnder(jsAPIPrefix + "STREAM.DELETE"), AllUnder(jsAPIPrefix + "STREAM.PURGE"),
		AllUnder(jsAPIPrefix + "STREAM.MSG.DELETE"), AllUnder(jsAPIPrefix + "CONSUMER.DURABLE.CREATE"),
	}
}
