package liveview

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// fakeSource is a broker as the live view reads it.
type fakeSource struct {
	mu        sync.Mutex
	pipelines []protocol.PipelineStatus
	workers   []protocol.WorkerStatus
	docs      map[string]*pipeline.Pipeline
	logs      []protocol.LogLine
	err       error
	reads     int // of Pipelines
	logsAsked struct {
		name  string
		since time.Time
		tail  int
	}
}

func (f *fakeSource) Pipelines(context.Context) ([]protocol.PipelineStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return append([]protocol.PipelineStatus(nil), f.pipelines...), f.err
}

func (f *fakeSource) Workers(context.Context) ([]protocol.WorkerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.workers, f.err
}

func (f *fakeSource) Document(_ context.Context, name string) (*pipeline.Pipeline, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.docs[name]; ok {
		return d, nil
	}
	return nil, errors.New("no document")
}

func (f *fakeSource) Logs(_ context.Context, name string, since time.Time, tail int) ([]protocol.LogLine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logsAsked.name, f.logsAsked.since, f.logsAsked.tail = name, since, tail
	n := min(tail, len(f.logs))
	return f.logs[len(f.logs)-n:], nil
}

// setBlocksOut sets job id's blocks out in pipeline 0.
func (f *fakeSource) setBlocksOut(id int, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.pipelines[0].Jobs {
		if f.pipelines[0].Jobs[i].ID == id {
			f.pipelines[0].Jobs[i].Stats.BlocksOut = n
		}
	}
}

var submitted = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// feedbackDoc is testdata/pipelines/feedback.json's graph: two sources into a sum whose product
// feeds back into it (pipe 4) and into a sink.
func feedbackDoc() *pipeline.Pipeline {
	return &pipeline.Pipeline{Name: "demo", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Outputs: []int{1}},
		{ID: 2, Type: "clock", Outputs: []int{2}},
		{ID: 3, Name: "mix", Type: "sum", Inputs: []int{1, 2, 4}, Outputs: []int{3}},
		{ID: 4, Name: "split", Exec: &pipeline.Exec{Path: "./split"}, Inputs: []int{3}, Outputs: []int{4, 5}},
		{ID: 5, Type: "discard", Inputs: []int{5}},
	}, Pipes: []pipeline.Pipe{{ID: 5, Codec: "json"}, {ID: 2, QoS: pipeline.QoSRealtime}}}
}

func newFake() *fakeSource {
	st := protocol.PipelineStatus{Name: "demo", Run: 2, State: protocol.StateRunning, Submitted: submitted,
		Events: []protocol.Event{
			{Time: submitted, Pipeline: "demo", Kind: "submitted", Message: "5 jobs"},
			{Time: submitted.Add(time.Second), Pipeline: "demo", Job: 3, Kind: "placed", Message: "mix 3 on worker w1"},
			{Time: submitted.Add(2 * time.Second), Pipeline: "demo", Kind: "started", Message: "all jobs started"},
		},
		Pipes: []protocol.PipeStats{{ID: 3, Job: 4, Messages: 40, Pending: 7, Stored: 7, StoredBytes: 700}}}
	for _, j := range feedbackDoc().Jobs {
		st.Jobs = append(st.Jobs, protocol.JobStatus{ID: j.ID, Name: j.DisplayName(), Worker: "w1", State: protocol.StateRunning,
			Stats: protocol.JobStats{BlocksIn: 10, BlocksOut: 10, Rounds: 10, CPUSeconds: 0.5, MemBytes: 1 << 20}})
	}
	old := protocol.PipelineStatus{Name: "old", Run: 1, State: protocol.StateFinished, Submitted: submitted.Add(-time.Hour),
		Jobs:   []protocol.JobStatus{{ID: 1, Name: "counter", Worker: "w2", State: protocol.StateFinished}},
		Events: []protocol.Event{{Time: submitted.Add(-time.Hour), Pipeline: "old", Kind: "submitted"}}}
	return &fakeSource{
		pipelines: []protocol.PipelineStatus{st, old},
		workers: []protocol.WorkerStatus{
			{WorkerInfo: protocol.WorkerInfo{Name: "w2", Groups: []string{"ALL"}, Slots: 2}, Alive: false, LastHeartbeat: time.Now().Add(-time.Minute)},
			{WorkerInfo: protocol.WorkerInfo{Name: "w1", Groups: []string{"ALL", "dsp"}, Slots: 4, Host: "pi1"}, Alive: true, LastHeartbeat: time.Now(),
				SlotsUsed: 3, Metrics: protocol.Metrics{CPUFree: 75, MemFree: 60, Load1: 0.5}},
		},
		docs: map[string]*pipeline.Pipeline{"demo": feedbackDoc()},
		logs: []protocol.LogLine{
			{Time: submitted, Pipeline: "demo", Job: 5, Name: "discard", Worker: "w1", Level: "info", Text: "one"},
			{Time: submitted, Pipeline: "demo", Job: 5, Name: "discard", Worker: "w1", Level: "warn", Text: "two"},
			{Time: submitted, Pipeline: "demo", Job: 5, Name: "discard", Worker: "w1", Level: "info", Text: "three"},
		},
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// get requests path of h from a loopback host and returns the response.
func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:8080"+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func decode[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return v
}

// TestPipelinesCarryTheGraphInLayersWithCountersAndRates: /api/pipelines has every job with its
// state, worker, counters, layer and row, every pipe as an edge with JetStream's figures, a
// feedback pipe kept as an edge but not followed for the layers, and rates once the counters move.
func TestPipelinesCarryTheGraphInLayersWithCountersAndRates(t *testing.T) {
	f := newFake()
	h := New(Options{Source: f, Logger: quiet(), MaxAge: time.Nanosecond})
	first := decode[map[string]any](t, get(t, h, http.MethodGet, "/api/pipelines"))
	ps := first["pipelines"].([]any)
	if len(ps) != 2 {
		t.Fatalf("%d pipelines, want 2", len(ps))
	}
	demo := ps[0].(map[string]any)
	for _, k := range []string{"name", "run", "state", "submitted", "depth", "jobs", "edges"} {
		if _, ok := demo[k]; !ok {
			t.Errorf("pipeline without %q: %v", k, demo)
		}
	}
	job := demo["jobs"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "name", "kind", "state", "worker", "depth", "row", "blocks_in", "blocks_out", "rounds",
		"bytes_in", "bytes_out", "cpu_seconds", "mem_bytes", "blocks_in_per_s", "blocks_out_per_s", "bytes_out_per_s", "cpu_percent"} {
		if _, ok := job[k]; !ok {
			t.Errorf("job without %q: %v", k, job)
		}
	}
	edge := demo["edges"].([]any)[0].(map[string]any)
	for _, k := range []string{"pipe", "from", "to", "messages", "lag", "messages_per_s", "blocks_per_s"} {
		if _, ok := edge[k]; !ok {
			t.Errorf("edge without %q: %v", k, edge)
		}
	}

	f.setBlocksOut(1, 50)
	reply := decode[PipelinesReply](t, get(t, h, http.MethodGet, "/api/pipelines"))
	p := reply.Pipelines[0]
	want := map[int][3]any{ // depth, row, kind
		1: {0, 0, "counter"}, 2: {0, 1, "clock"}, 3: {1, 0, "sum"}, 4: {2, 0, "exec"}, 5: {3, 0, "discard"},
	}
	for _, j := range p.Jobs {
		w := want[j.ID]
		if j.Depth != w[0] || j.Row != w[1] || j.Kind != w[2] || j.Worker != "w1" || j.State != "running" {
			t.Errorf("job %d: depth %d row %d kind %q worker %q state %q, want %v on w1 running", j.ID, j.Depth, j.Row, j.Kind, j.Worker, j.State, w)
		}
	}
	if p.Depth != 4 || p.Name != "demo" || p.Run != 2 || !p.Submitted.Equal(submitted) {
		t.Errorf("pipeline %+v", p)
	}
	if j := p.Jobs[0]; j.BlocksOut != 50 || j.BlocksOutPS <= 0 || j.BlocksInPS != 0 || j.MemBytes != 1<<20 {
		t.Errorf("job 1: %+v, want 50 blocks out at a positive rate", j)
	}
	edges := map[int]Edge{}
	for _, e := range p.Edges {
		edges[e.Pipe] = e
	}
	if len(edges) != 5 {
		t.Fatalf("edges %+v, want pipes 1 to 5", p.Edges)
	}
	if e := edges[4]; e.From != 4 || e.To != 3 {
		t.Errorf("feedback pipe 4: %+v, want 4 → 3", e)
	}
	if e := edges[3]; e.From != 3 || e.To != 4 || e.Messages != 40 || e.Lag != 7 || e.StoredBytes != 700 {
		t.Errorf("pipe 3: %+v, want 3 → 4 with 40 messages, lag 7", e)
	}
	if e := edges[1]; e.BlocksPS <= 0 {
		t.Errorf("pipe 1: %+v, want its writer's rate", e)
	}
	if e := edges[2]; !e.Realtime || edges[5].Codec != "json" {
		t.Errorf("pipes 2 and 5: %+v %+v", e, edges[5])
	}
	if old := reply.Pipelines[1]; old.Name != "old" || len(old.Edges) != 0 || len(old.Jobs) != 1 {
		t.Errorf("a pipeline without a document: %+v, want its jobs and no edges", old)
	}
}

// TestSnapshotServesEveryRequestWithinMaxAge: several pages open cost the broker one read.
func TestSnapshotServesEveryRequestWithinMaxAge(t *testing.T) {
	f := newFake()
	h := New(Options{Source: f, Logger: quiet(), MaxAge: time.Hour})
	for _, path := range []string{"/api/pipelines", "/api/workers", "/api/events", "/api/pipelines"} {
		if resp := get(t, h, http.MethodGet, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	if f.reads != 1 {
		t.Errorf("the broker was read %d times, want 1", f.reads)
	}
}

// TestWorkersCarryTheirLoadAndJobs: /api/workers lists every worker by name with liveness, slots,
// load and the jobs of unfinished pipelines placed on it.
func TestWorkersCarryTheirLoadAndJobs(t *testing.T) {
	h := New(Options{Source: newFake(), Logger: quiet()})
	raw := decode[map[string]any](t, get(t, h, http.MethodGet, "/api/workers"))
	w0 := raw["workers"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "alive", "groups", "slots", "slots_used", "cpu_free", "mem_free", "load1", "heartbeat_age_s", "jobs"} {
		if _, ok := w0[k]; !ok {
			t.Errorf("worker without %q: %v", k, w0)
		}
	}
	reply := decode[WorkersReply](t, get(t, h, http.MethodGet, "/api/workers"))
	if len(reply.Workers) != 2 || reply.Workers[0].Name != "w1" || reply.Workers[1].Name != "w2" {
		t.Fatalf("workers %+v, want w1 and w2 by name", reply.Workers)
	}
	w1, w2 := reply.Workers[0], reply.Workers[1]
	if !w1.Alive || w1.Slots != 4 || w1.SlotsUsed != 3 || w1.CPUFree != 75 || w1.Load1 != 0.5 || w1.Host != "pi1" || len(w1.Jobs) != 5 || w1.Jobs[2] != "demo/3 mix" {
		t.Errorf("w1: %+v", w1)
	}
	if w2.Alive || w2.HeartbeatAgeS < 59 || len(w2.Jobs) != 0 {
		t.Errorf("w2: %+v, want lost a minute ago with no job (its pipeline finished)", w2)
	}
}

// TestEventsOfAPipelineOrOfAll: the last N events of one pipeline, oldest first, or of all by time.
func TestEventsOfAPipelineOrOfAll(t *testing.T) {
	h := New(Options{Source: newFake(), Logger: quiet()})
	one := decode[EventsReply](t, get(t, h, http.MethodGet, "/api/events?pipeline=demo&limit=2"))
	if one.Pipeline != "demo" || len(one.Events) != 2 || one.Events[0].Kind != "placed" || one.Events[1].Kind != "started" {
		t.Errorf("events of demo: %+v", one)
	}
	all := decode[EventsReply](t, get(t, h, http.MethodGet, "/api/events"))
	if len(all.Events) != 4 || all.Events[0].Pipeline != "old" || all.Events[3].Kind != "started" {
		t.Errorf("every event: %+v", all.Events)
	}
	if resp := get(t, h, http.MethodGet, "/api/events?pipeline=nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("events of an unknown pipeline: %d, want 404", resp.StatusCode)
	}
	if resp := get(t, h, http.MethodGet, "/api/events?limit=x"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("limit=x: %d, want 400", resp.StatusCode)
	}
}

// TestLogsAreTheTailOfTheCurrentRun: /api/logs asks the source for the run's lines since its
// submission and returns the last N, oldest first; bad or missing parameters are 400, an
// unknown pipeline 404.
func TestLogsAreTheTailOfTheCurrentRun(t *testing.T) {
	f := newFake()
	h := New(Options{Source: f, Logger: quiet()})
	reply := decode[LogsReply](t, get(t, h, http.MethodGet, "/api/logs?pipeline=demo&tail=2"))
	if reply.Pipeline != "demo" || reply.Run != 2 || len(reply.Lines) != 2 || reply.Lines[0].Text != "two" || reply.Lines[0].Level != "warn" ||
		reply.Lines[1].Text != "three" || reply.Lines[1].Job != 5 || reply.Lines[1].Worker != "w1" || reply.Lines[1].Name != "discard" {
		t.Errorf("logs: %+v", reply)
	}
	if f.logsAsked.name != "demo" || !f.logsAsked.since.Equal(submitted) || f.logsAsked.tail != 2 {
		t.Errorf("asked the source for %+v", f.logsAsked)
	}
	decode[LogsReply](t, get(t, h, http.MethodGet, "/api/logs?pipeline=demo&tail=100000"))
	if f.logsAsked.tail != MaxTail {
		t.Errorf("tail 100000 asked for %d lines, want at most %d", f.logsAsked.tail, MaxTail)
	}
	for path, code := range map[string]int{
		"/api/logs":                       http.StatusBadRequest,
		"/api/logs?pipeline=a.b":          http.StatusBadRequest,
		"/api/logs?pipeline=demo&tail=-1": http.StatusBadRequest,
		"/api/logs?pipeline=nope":         http.StatusNotFound,
		"/api/nothing":                    http.StatusNotFound,
	} {
		resp := get(t, h, http.MethodGet, path)
		var e ErrorReply
		if err := json.NewDecoder(resp.Body).Decode(&e); resp.StatusCode != code || err != nil || e.Error == "" {
			t.Errorf("%s: %d %+v %v, want %d with an error", path, resp.StatusCode, e, err, code)
		}
	}
}

// TestBrokerThatCannotBeReadIs502: the page learns why it cannot update.
func TestBrokerThatCannotBeReadIs502(t *testing.T) {
	f := newFake()
	f.err = errors.New("nats: no responders available for request")
	h := New(Options{Source: f, Logger: quiet()})
	resp := get(t, h, http.MethodGet, "/api/pipelines")
	var e ErrorReply
	if err := json.NewDecoder(resp.Body).Decode(&e); resp.StatusCode != http.StatusBadGateway || err != nil || !strings.Contains(e.Error, "no responders") {
		t.Errorf("%d %+v %v, want 502 naming the cause", resp.StatusCode, e, err)
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// TestAuthorizationIsAskedForAndChecked: with Authorize every path, the page too, answers 401
// with a basic challenge until the request carries a token Authorize admits: as a bearer token,
// as a basic password (the operator token, any user), or as an identity's name and secret.
func TestAuthorizationIsAskedForAndChecked(t *testing.T) {
	var asked []string
	var mu sync.Mutex
	authorize := func(tok string) bool {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, tok)
		return tok == "op-token" || tok == protocol.IdentityToken("dash", "s3cret")
	}
	h := New(Options{Source: newFake(), Logger: quiet(), Authorize: authorize})
	refused := [][]string{
		nil,
		{"Authorization", "Bearer wrong"},
		{"Authorization", "Bearer "},
		{"Authorization", basic("operator", "wrong")},
		{"Authorization", basic("dash", "wrong")},
		{"Authorization", basic("op-token", "")},
		{"Authorization", "Token op-token"},
	}
	for _, path := range []string{"/", "/app.js", "/api/pipelines", "/api/logs?pipeline=demo"} {
		for _, hdr := range refused {
			resp := get(t, h, http.MethodGet, path, hdr...)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s with %v: %d, want 401", path, hdr, resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="marvelo live view", charset="UTF-8"` {
				t.Errorf("%s with %v: WWW-Authenticate %q", path, hdr, got)
			}
		}
	}
	if resp := get(t, h, http.MethodPost, "/api/pipelines"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST without credentials: %d, want 401 before anything else", resp.StatusCode)
	}
	for _, hdr := range [][]string{
		{"Authorization", "Bearer op-token"},
		{"Authorization", "bearer op-token"},
		{"Authorization", "Bearer " + protocol.IdentityToken("dash", "s3cret")},
		{"Authorization", basic("", "op-token")},
		{"Authorization", basic("anyone", "op-token")},
		{"Authorization", basic("dash", "s3cret")},
	} {
		for _, path := range []string{"/", "/api/pipelines"} {
			if resp := get(t, h, http.MethodGet, path, hdr...); resp.StatusCode != http.StatusOK {
				t.Errorf("%s with %v: %d, want 200", path, hdr, resp.StatusCode)
			}
		}
	}
	// From another host: authenticated, so no loopback rule.
	r := httptest.NewRequest(http.MethodGet, "http://head.example:8080/api/workers", nil)
	r.Header.Set("Authorization", "Bearer op-token")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("authenticated from head.example: %d, want 200", w.Code)
	}
}

// TestReadOnly: nothing but GET and HEAD; HEAD answers without a body.
func TestReadOnly(t *testing.T) {
	h := New(Options{Source: newFake(), Logger: quiet()})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "PROPFIND"} {
		for _, path := range []string{"/", "/api/pipelines", "/api/logs?pipeline=demo"} {
			resp := get(t, h, m, path)
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q, want 405 with Allow: GET, HEAD", m, path, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, path := range []string{"/", "/api/pipelines"} {
		req, _ := http.NewRequest(http.MethodHead, srv.URL+path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Type") == "" {
			t.Errorf("HEAD %s: %d with %d bytes, Content-Type %q", path, resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
		}
	}
}

// TestWithoutAuthorizationOnlyLoopbackHostsAreAnswered: a page of another site whose name
// resolves to 127.0.0.1 (DNS rebinding) cannot read an unauthenticated view.
func TestWithoutAuthorizationOnlyLoopbackHostsAreAnswered(t *testing.T) {
	h := New(Options{Source: newFake(), Logger: quiet()})
	for host, code := range map[string]int{
		"127.0.0.1:8080": http.StatusOK, "localhost:8080": http.StatusOK, "LOCALHOST": http.StatusOK,
		"[::1]:8080": http.StatusOK, "127.0.0.2": http.StatusOK,
		"evil.example:8080": http.StatusForbidden, "10.0.0.1:8080": http.StatusForbidden, "": http.StatusForbidden,
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/workers", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != code {
			t.Errorf("Host %q: %d, want %d", host, w.Code, code)
		}
	}
}

// TestPageIsEmbeddedAndFetchesNothingElsewhere: the page, its script and style come from the
// binary with their types, and nothing in them loads from another origin.
func TestPageIsEmbeddedAndFetchesNothingElsewhere(t *testing.T) {
	h := New(Options{Source: newFake(), Logger: quiet()})
	for path, ct := range map[string]string{"/": "text/html", "/app.js": "javascript", "/style.css": "text/css"} {
		resp := get(t, h, http.MethodGet, path)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), ct) || len(body) == 0 {
			t.Errorf("%s: %d %q %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
	}
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		text := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "") // a namespace, not a fetch
		for _, bad := range []string{"http://", "https://", "//cdn", "innerHTML", "eval("} {
			if strings.Contains(text, bad) {
				t.Errorf("%s contains %q", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestServeListensOnLoopbackAndRefusesBeyondWithoutAuthorization: Serve refuses an address
// beyond loopback without Authorize, serves on a random loopback port, and Close stops it.
func TestServeListensOnLoopbackAndRefusesBeyondWithoutAuthorization(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0"} {
		s, err := Serve(Options{Addr: addr, Source: newFake(), Logger: quiet()})
		if err == nil {
			s.Close()
			t.Errorf("%s without Authorize: served", addr)
		} else if !strings.Contains(err.Error(), "--auth-token") {
			t.Errorf("%s: %v, want it to name --auth-token", addr, err)
		}
	}
	if _, err := Serve(Options{Addr: "nonsense", Source: newFake()}); err == nil {
		t.Error("a malformed address was accepted")
	}
	s, err := Serve(Options{Addr: "0.0.0.0:0", Source: newFake(), Logger: quiet(), Authorize: func(tok string) bool { return tok == "t" }})
	if err != nil {
		t.Fatalf("beyond loopback with Authorize: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Serve(Options{Addr: "127.0.0.1:0", Source: newFake(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + s.Addr() + "/api/pipelines"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	decode[PipelinesReply](t, resp)
	resp.Body.Close()
	if _, err := Serve(Options{Addr: s.Addr(), Source: newFake(), Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a port in use: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("still served after Close")
	}
}

// TestRatesAreOverAboutASecond: a rate is the change since the newest sample at least a second
// old (else the oldest), a counter that went back counts from zero, a new one has none yet.
func TestRatesAreOverAboutASecond(t *testing.T) {
	var r rater
	t0 := time.Unix(1000, 0)
	if got := r.rates(t0, map[string]float64{"a": 10}); len(got) != 0 {
		t.Errorf("first sample: %v", got)
	}
	if got := r.rates(t0.Add(500*time.Millisecond), map[string]float64{"a": 15}); got["a"] != 10 {
		t.Errorf("half a second later: %v, want 10/s against the oldest", got)
	}
	got := r.rates(t0.Add(1500*time.Millisecond), map[string]float64{"a": 40, "b": 1})
	if got["a"] != 25 {
		t.Errorf("1.5 s: a %v, want 25/s over the last second (since 0.5 s)", got["a"])
	}
	if _, ok := got["b"]; ok {
		t.Errorf("a new counter has a rate: %v", got)
	}
	if got := r.rates(t0.Add(2500*time.Millisecond), map[string]float64{"a": 5}); got["a"] != 5 {
		t.Errorf("a counter gone back: %v, want 5/s from zero", got)
	}
	if got := r.rates(t0.Add(time.Minute), map[string]float64{"a": 65}); len(r.samples) != 2 || got["a"] != 60.0/57.5 {
		t.Errorf("after a minute: %v with %d samples kept", got, len(r.samples))
	}
}

// TestLayoutTakesTheLongestPathAndCutsLoops: a job stands one layer after the deepest job
// feeding it; a loop is cut where it comes back.
func TestLayoutTakesTheLongestPathAndCutsLoops(t *testing.T) {
	doc := &pipeline.Pipeline{Jobs: []pipeline.Job{
		{ID: 1, Outputs: []int{1, 2}},
		{ID: 2, Inputs: []int{1}, Outputs: []int{3}},
		{ID: 3, Inputs: []int{3}, Outputs: []int{4}},
		{ID: 4, Inputs: []int{2, 4, 6}, Outputs: []int{5}},
		{ID: 5, Inputs: []int{5}, Outputs: []int{6}}, // back into 4
		{ID: 6, Outputs: []int{7}},                   // a source with no reader
	}}
	g := layout(doc)
	for id, d := range map[int]int{1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 0} {
		if g.depth[id] != d {
			t.Errorf("job %d at depth %d, want %d", id, g.depth[id], d)
		}
	}
	if g.row[6] != 1 || g.row[1] != 0 {
		t.Errorf("rows %v", g.row)
	}
	if len(g.edges) != 7 || g.edges[6] != (Edge{Pipe: 7, From: 6}) {
		t.Errorf("edges %+v", g.edges)
	}
}
