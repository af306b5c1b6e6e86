package protocol

import (
	"context"
	"encoding/json"
	"fmt"
)

// The request layer (issue 23): every control request is JSON, and every answer is a Reply, or a
// reply type that embeds one (DrainReply, StatusReply, ...). Call is the asking side and Serve
// (with Answer) the answering side; both are transport-free, the broker and the worker pass in
// their NATS request (Send) and respond with the bytes Serve or Answer return.

// Send is a transport's request: it sends data on subject and returns the answer's data. Its
// errors reach Call's caller as they are, so a transport names in them what it wants to.
type Send func(ctx context.Context, subject string, data []byte) ([]byte, error)

// Refusal is the answerer's "no": a Reply whose OK is false. Its message names the subject the
// request went to; Reason is the answerer's own words ("request failed" when it gave none).
type Refusal struct {
	Subject string
	Reason  string
}

func (r *Refusal) Error() string { return r.Subject + ": " + r.Reason }

// Call sends req, as JSON, on subject through send and decodes the answer: a Reply that is not OK
// is a *Refusal; otherwise the answer is decoded into a Resp (Reply for a bare one; a reply type
// embedding Reply; json.RawMessage for the answer as it came). A request it cannot encode and an
// answer it cannot decode are errors naming the subject.
func Call[Resp any](ctx context.Context, send Send, subject string, req any) (Resp, error) {
	var resp Resp
	data, err := json.Marshal(req)
	if err != nil {
		return resp, fmt.Errorf("%s: encode request: %w", subject, err)
	}
	data, err = send(ctx, subject, data)
	if err != nil {
		return resp, err
	}
	var r Reply
	if err := json.Unmarshal(data, &r); err != nil {
		return resp, fmt.Errorf("%s: bad reply: %w", subject, err)
	}
	if err := r.Err(); err != nil {
		return resp, &Refusal{Subject: subject, Reason: err.Error()}
	}
	if p, ok := any(&resp).(*Reply); ok {
		*p = r
		return resp, nil
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return resp, fmt.Errorf("%s: bad reply: %w", subject, err)
	}
	return resp, nil
}

// Serve turns a handler into the answering side of a request: it decodes the request's data
// into a Req (json.RawMessage: the data as it came, for a handler that decodes it itself; no
// data: the zero Req), calls h and encodes what it returns with Answer. A request it cannot
// decode is refused.
func Serve[Req any](h func(Req) (any, error)) func(data []byte) []byte {
	return func(data []byte) []byte {
		var req Req
		if p, ok := any(&req).(*json.RawMessage); ok {
			*p = data
		} else if len(data) > 0 {
			if err := json.Unmarshal(data, &req); err != nil {
				return Answer(nil, fmt.Errorf("bad request: %w", err))
			}
		}
		return Answer(h(req))
	}
}

// Answer encodes a handler's outcome as the answer's data: a refusal, Reply{Error}, when err is
// not nil; a bare Reply{OK: true} when resp is nil; else resp itself (a Reply, or a reply type
// embedding one, which says OK itself). A resp that cannot be encoded is answered with a refusal
// saying so, so the asker is not left waiting.
func Answer(resp any, err error) []byte {
	switch {
	case err != nil:
		resp = Reply{Error: err.Error()}
	case resp == nil:
		resp = Reply{OK: true}
	}
	data, err := json.Marshal(resp)
	if err != nil {
		data, _ = json.Marshal(Reply{Error: fmt.Sprintf("encode reply: %v", err)})
	}
	return data
}
