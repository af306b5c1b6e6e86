package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// loopback is a transport that hands the request to serve on the same subject only.
func loopback(t *testing.T, subject string, serve func([]byte) []byte) Send {
	t.Helper()
	return func(ctx context.Context, subj string, data []byte) ([]byte, error) {
		if subj != subject {
			t.Fatalf("sent on %s, want %s", subj, subject)
		}
		return serve(data), nil
	}
}

func TestCallServeRoundTrip(t *testing.T) {
	const subject = "marvelo.worker.w1.leave"
	var got LeaveRequest
	serve := Serve(func(req LeaveRequest) (any, error) {
		got = req
		return DrainReply{Reply: Reply{OK: true}, Moved: []string{"p/1"}}, nil
	})
	r, err := Call[DrainReply](context.Background(), loopback(t, subject, serve), subject, LeaveRequest{Grace: 7})
	if err != nil {
		t.Fatal(err)
	}
	if got.Grace != 7 {
		t.Errorf("the handler got %+v", got)
	}
	if !r.OK || len(r.Moved) != 1 || r.Moved[0] != "p/1" {
		t.Errorf("reply %+v", r)
	}
}

func TestServeNilReplyIsOK(t *testing.T) {
	const subject = "marvelo.worker.w1.start"
	serve := Serve(func(ref JobRef) (any, error) { return nil, nil })
	r, err := Call[Reply](context.Background(), loopback(t, subject, serve), subject, JobRef{Pipeline: "p", Job: 1})
	if err != nil || !r.OK {
		t.Fatalf("%+v, %v", r, err)
	}
	// The answer as it came, for a caller that decodes it itself.
	raw, err := Call[json.RawMessage](context.Background(), loopback(t, subject, serve), subject, nil)
	if err != nil || string(raw) != `{"ok":true}` {
		t.Fatalf("%s, %v", raw, err)
	}
}

func TestServeRawMessageIsTheDataAsItCame(t *testing.T) {
	var got []byte
	serve := Serve(func(data json.RawMessage) (any, error) { got = data; return nil, nil })
	serve([]byte("not json"))
	if string(got) != "not json" {
		t.Errorf("the handler got %q", got)
	}
}

func TestCallErrorReplyIsARefusalNamingTheSubject(t *testing.T) {
	const subject = "marvelo.worker.w1.prepare"
	serve := Serve(func(a Assignment) (any, error) { return nil, errors.New("job 1 (x): unknown type") })
	_, err := Call[Reply](context.Background(), loopback(t, subject, serve), subject, Assignment{Pipeline: "p"})
	var rf *Refusal
	if !errors.As(err, &rf) {
		t.Fatalf("%v (%T) is no refusal", err, err)
	}
	if rf.Subject != subject || rf.Reason != "job 1 (x): unknown type" {
		t.Errorf("refusal %+v", rf)
	}
	if !strings.Contains(err.Error(), subject) || !strings.Contains(err.Error(), "unknown type") {
		t.Errorf("%q does not name the subject and the reason", err)
	}
}

func TestCallRefusalWithoutReason(t *testing.T) {
	send := func(context.Context, string, []byte) ([]byte, error) { return []byte(`{"ok":false}`), nil }
	_, err := Call[Reply](context.Background(), send, "s", nil)
	var rf *Refusal
	if !errors.As(err, &rf) || rf.Reason != "request failed" {
		t.Fatalf("%v", err)
	}
}

func TestServeRefusesABadRequest(t *testing.T) {
	called := false
	serve := Serve(func(ref JobRef) (any, error) { called = true; return nil, nil })
	send := func(_ context.Context, _ string, _ []byte) ([]byte, error) { return serve([]byte("{")), nil }
	_, err := Call[Reply](context.Background(), send, "s", nil)
	var rf *Refusal
	if !errors.As(err, &rf) || !strings.Contains(rf.Reason, "bad request") || called {
		t.Fatalf("%v (called %v)", err, called)
	}
}

func TestCallBadReplyAndTransportErrors(t *testing.T) {
	const subject = "marvelo.register.w1"
	bad := func(context.Context, string, []byte) ([]byte, error) { return []byte("garbage"), nil }
	_, err := Call[Reply](context.Background(), bad, subject, nil)
	var rf *Refusal
	if err == nil || errors.As(err, &rf) || !strings.Contains(err.Error(), subject+": bad reply") {
		t.Errorf("bad reply: %v", err)
	}
	gone := errors.New("no responders")
	down := func(context.Context, string, []byte) ([]byte, error) { return nil, gone }
	if _, err := Call[Reply](context.Background(), down, subject, nil); err != gone {
		t.Errorf("transport error %v, want it as it is", err)
	}
	if _, err := Call[Reply](context.Background(), down, subject, make(chan int)); err == nil || !strings.Contains(err.Error(), subject) {
		t.Errorf("unencodable request: %v", err)
	}
}

func TestAnswer(t *testing.T) {
	for _, tc := range []struct {
		resp any
		err  error
		want string
	}{
		{nil, nil, `{"ok":true}`},
		{nil, errors.New("no"), `{"ok":false,"error":"no"}`},
		{Reply{OK: true}, errors.New("no"), `{"ok":false,"error":"no"}`},
		{GroupReply{Worker: "w1", Reply: Reply{OK: true}}, nil, ""},
	} {
		got := string(Answer(tc.resp, tc.err))
		if tc.want == "" {
			var r GroupReply
			if err := json.Unmarshal([]byte(got), &r); err != nil || r.Worker != "w1" || !r.OK {
				t.Errorf("%+v: %s", tc.resp, got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%+v, %v: %s, want %s", tc.resp, tc.err, got, tc.want)
		}
	}
	var r Reply
	if err := json.Unmarshal(Answer(make(chan int), nil), &r); err != nil || r.OK || !strings.Contains(r.Error, "encode reply") {
		t.Errorf("unencodable reply: %+v, %v", r, err)
	}
}
