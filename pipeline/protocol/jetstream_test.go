package protocol

import "testing"

// The subjects below are what nats-server and nats.go use for acknowledgements, key-value
// buckets and object stores (the JetStream API subjects are checked against the server's own
// templates in broker/permissions_test.go, where NATS may be imported).
func TestJetStreamSubjectsHaveTheServersShape(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{AllUnder("_INBOX.w1"), "_INBOX.w1.>"},
		{KVStream("b"), "KV_b"},
		{ObjectStream("b"), "OBJ_b"},
		{KVKeySubject("b", "demo.5"), "$KV.b.demo.5"},
		{KVSubjects("b"), "$KV.b.>"},
		{ObjectSubjects("b"), "$O.b.>"},
		{JSAcks("S", "C"), "$JS.ACK.S.C.>"},
		{JSDirectGetLast(KVStream("b"), KVKeySubject("b", "k")), "$JS.API.DIRECT.GET.KV_b.$KV.b.k"},
		{JSStreamInfo(LogStream), LogStreamInfoSubject},
		{JSDirectGet(LogStream), LogDirectGetSubject},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// The reading of the logs is still named as a right once the subjects come from JSStreamInfo
// and JSDirectGet.
func TestTheLogStreamsJetStreamSubjectsAreAReadersRight(t *testing.T) {
	for _, s := range []string{JSStreamInfo(LogStream), JSDirectGet(LogStream), JSDirectGetLast(LogStream, LogSubject("demo", 5))} {
		if Right(s) == "" {
			t.Errorf("Right(%q) names no right", s)
		}
	}
}
