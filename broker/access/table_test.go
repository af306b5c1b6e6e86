package access

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// assignment is job id of pipeline p writing its own pipe.
func assignment(p string, id int, epoch uint64) protocol.Assignment {
	return protocol.Assignment{Pipeline: p, Epoch: epoch, Job: pipeline.Job{ID: id},
		Outputs: []protocol.PipeBinding{{ID: id, Subject: protocol.PipeSubject(p, id), Stream: protocol.PipeStream(p, id)}}}
}

func placed(t *testing.T, worker string, as protocol.Assignment) Placed {
	t.Helper()
	b, err := json.Marshal(as)
	if err != nil {
		t.Fatal(err)
	}
	return Placed{Worker: worker, Assignment: as, Entry: b}
}

// mayPublish reports whether the identity's permissions now allow publishing on subject.
func mayPublish(tab *Table, name, subject string) bool {
	id, _ := tab.Identity(name)
	p := tab.Permissions(id)
	return p == nil || slices.Contains(p.Publish.Allow, subject)
}

func opKeys(ops []Op) []string {
	var out []string
	for _, op := range ops {
		k := op.Key
		if op.Value == nil {
			k = "-" + k
		}
		out = append(out, k)
	}
	return out
}

// TestGrantsFollowTheChangesEachCountedOnce: a grant to a worker identity is one change (one
// generation, one queued put per job), granting it again as it is changes nothing, the shared
// token's worker (no identity) is granted nothing, and a revocation is one change queuing deletes.
func TestGrantsFollowTheChangesEachCountedOnce(t *testing.T) {
	tab := NewTable()
	tab.Add(Identity{Name: "w1", Role: RoleWorker})
	tab.Add(Identity{Name: "op", Role: RoleOperator})
	tab.Take()
	gen := tab.Gen()
	a1, a2 := assignment("p", 1, 1), assignment("p", 2, 1)
	if !tab.Grant([]Placed{placed(t, "w1", a1), placed(t, "w1", a2), placed(t, "shared", a1), placed(t, "op", a1)}) {
		t.Fatal("nothing granted")
	}
	if tab.Gen() != gen+1 {
		t.Fatalf("gen %d after one grant of two jobs, want %d", tab.Gen(), gen+1)
	}
	ops := tab.Take()
	if got, want := opKeys(ops), []string{"grant.w1.p.1", "grant.w1.p.2"}; !slices.Equal(got, want) {
		t.Fatalf("queued %v, want %v", got, want)
	}
	if string(ops[0].Value) != string(placed(t, "w1", a1).Entry) {
		t.Errorf("grant entry %s", ops[0].Value)
	}
	if len(tab.Take()) != 0 {
		t.Error("Take did not empty the queue")
	}
	if !mayPublish(tab, "w1", protocol.PipeSubject("p", 2)) || mayPublish(tab, "w1", protocol.PipeSubject("p", 3)) {
		t.Error("the permissions do not follow the grants")
	}
	if tab.Grant([]Placed{placed(t, "w1", a1)}) || tab.Gen() != gen+1 || len(tab.Take()) != 0 {
		t.Error("a grant made again as it is changed the table")
	}
	if !tab.Grant([]Placed{placed(t, "w1", assignment("p", 1, 2))}) {
		t.Error("a new epoch of a granted job is not a change")
	}
	tab.Take()
	if got := tab.Holders("p"); !slices.Equal(got, []string{"w1"}) {
		t.Errorf("holders of p: %v", got)
	}
	if tab.Revoke("w1", func(k Key, _ protocol.Assignment) bool { return k.Pipeline == "q" }) {
		t.Error("revoking nothing is a change")
	}
	gen = tab.Gen()
	if !tab.Revoke("w1", func(k Key, g protocol.Assignment) bool { return k == Key{"p", 1} && g.Epoch <= 2 }) || tab.Gen() != gen+1 {
		t.Fatal("the revocation of job 1 is not one change")
	}
	if got, want := opKeys(tab.Take()), []string{"-grant.w1.p.1"}; !slices.Equal(got, want) {
		t.Fatalf("queued %v, want %v", got, want)
	}
	if mayPublish(tab, "w1", protocol.PipeSubject("p", 1)) || !mayPublish(tab, "w1", protocol.PipeSubject("p", 2)) {
		t.Error("the permissions do not follow the revocation")
	}
}

func TestGroupsAndRemoval(t *testing.T) {
	tab := NewTable()
	tab.Add(Identity{Name: "w1", Role: RoleWorker})
	subjects := protocol.WorkerInfo{Groups: []string{"dsp"}}.GroupSubjects()
	if !tab.SetGroups("w1", subjects, []byte(`[]`)) || tab.SetGroups("w1", slices.Clone(subjects), nil) {
		t.Fatal("SetGroups: a change not reported, or the same groups reported as one")
	}
	if got := opKeys(tab.Take()); !slices.Equal(got, []string{"groups.w1"}) {
		t.Fatalf("queued %v", got)
	}
	id, _ := tab.Identity("w1")
	if p := tab.Permissions(id); !slices.Contains(p.Subscribe.Allow, subjects[0]) {
		t.Errorf("the groups' subjects are not in %v", p.Subscribe.Allow)
	}
	tab.Grant([]Placed{placed(t, "w1", assignment("p", 1, 1))})
	if id, _ := tab.Identity("w1"); !slices.Equal(tab.Groups("w1"), subjects) || id.Role != RoleWorker {
		t.Error("the table does not show the groups and the identity")
	}
	gen := tab.Gen()
	tab.Remove("w1")
	if tab.Gen() != gen+1 || tab.Enrolled("w1") || tab.Count() != 0 || len(tab.Holders("p")) != 0 || tab.Groups("w1") != nil || len(tab.All()) != 0 {
		t.Error("a removed identity keeps something")
	}
}

func TestPermissionsByRole(t *testing.T) {
	tab := NewTable()
	if p := tab.Permissions(Identity{Name: "op", Role: RoleOperator}); p != nil {
		t.Errorf("an operator is limited: %+v", p)
	}
	r := tab.Permissions(Identity{Name: "r", Role: RoleReader})
	if !slices.Equal(r.Publish.Allow, ReaderPermissions("r").Publish.Allow) {
		t.Errorf("a reader's permissions: %+v", r.Publish.Allow)
	}
	w := tab.Permissions(Identity{Name: "w", Role: RoleWorker})
	if !slices.Equal(w.Publish.Allow, WorkerPermissions("w", nil, nil).Publish.Allow) {
		t.Errorf("a worker without jobs: %+v", w.Publish.Allow)
	}
}

func TestWorkerPermissionsAreSortedWithoutRepeats(t *testing.T) {
	as := assignment("p", 1, 1)
	p := WorkerPermissions("w", []string{"g.>", "g.>"}, []protocol.Assignment{as, as})
	for _, l := range [][]string{p.Publish.Allow, p.Subscribe.Allow} {
		if !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) {
			t.Errorf("not sorted or with repeats: %q", l)
		}
	}
}

func TestViolationsAreCountedPerIdentity(t *testing.T) {
	tab := NewTable()
	tab.Connected(3, "w1")
	if tab.Violation(3) != "w1" || tab.Violation(3) != "w1" || tab.Violation(9) != "token client" {
		t.Fatal("a violation counted for the wrong identity")
	}
	v := tab.Violations()
	if v["w1"] != 2 || v["token client"] != 1 {
		t.Fatalf("violations %v", v)
	}
	v["w1"] = 0
	if tab.Violations()["w1"] != 2 {
		t.Error("Violations is not a copy")
	}
}

// TestLoadReadsEveryKindOfEntry: the entries of the bucket as a broker starts: identities,
// grants (filed under the job their value names), groups; none counted as a change.
func TestLoadReadsEveryKindOfEntry(t *testing.T) {
	tab := NewTable()
	id, _ := json.Marshal(Identity{Name: "w1", Role: RoleWorker})
	grant, _ := json.Marshal(assignment("p", 7, 1))
	for _, e := range []struct {
		key, value string
		kind       Kind
	}{
		{"w1", string(id), EntryIdentity},
		{"grant.w1.p.999", string(grant), EntryGrant},
		{"groups.w1", `["marvelo.group.dsp.>"]`, EntryGroups},
	} {
		kind, err := tab.Load(e.key, []byte(e.value))
		if err != nil || kind != e.kind {
			t.Fatalf("load %s: %v %v, want %v", e.key, kind, err, e.kind)
		}
	}
	if tab.Gen() != 0 {
		t.Errorf("gen %d after a load", tab.Gen())
	}
	if tab.Touch() != 1 {
		t.Error("Touch does not count a change")
	}
	if !tab.Enrolled("w1") || !mayPublish(tab, "w1", protocol.PipeSubject("p", 7)) {
		t.Error("the loaded identity or grant is missing")
	}
	if got := tab.Holders("p"); !slices.Equal(got, []string{"w1"}) {
		t.Errorf("holders %v", got)
	}
	for key, kind := range map[string]Kind{"x": EntryIdentity, "grant.w1.p.1": EntryGrant, "groups.w1": EntryGroups} {
		got, err := tab.Load(key, []byte("{"))
		var ee *EntryError
		if got != kind || !errors.As(err, &ee) || ee.Kind != kind || ee.Err == nil {
			t.Errorf("load of a malformed %s: %v %v", key, got, err)
		}
	}
}

// TestApplyingAnotherTablesWritesMakesTheSameTable: what one broker's table queues, applied by
// another broker from the bucket's watch, gives the same permissions; applying an entry it has
// already changes nothing.
func TestApplyingAnotherTablesWritesMakesTheSameTable(t *testing.T) {
	writer, follower := NewTable(), NewTable()
	apply := func(ops []Op) (changes int) {
		t.Helper()
		for _, op := range ops {
			changed, err := follower.Apply(op.Key, op.Value, op.Value == nil)
			if err != nil {
				t.Fatalf("apply %s: %v", op.Key, err)
			}
			if changed {
				changes++
			}
		}
		return changes
	}
	w1 := Identity{Name: "w1", Role: RoleWorker, Groups: []string{"dsp"}}
	id, _ := json.Marshal(w1)
	writer.Add(w1)
	apply([]Op{{Key: "w1", Value: id}}) // the enrolment API writes the identity itself
	writer.SetGroups("w1", []string{"marvelo.group.dsp.>"}, []byte(`["marvelo.group.dsp.>"]`))
	writer.Grant([]Placed{placed(t, "w1", assignment("p", 1, 1)), placed(t, "w1", assignment("p", 2, 1))})
	ops := writer.Take()
	if n := apply(ops); n != 3 {
		t.Fatalf("%d changes applied, want 3", n)
	}
	if n := apply(ops); n != 0 {
		t.Fatalf("%d changes applying the same entries again", n)
	}
	if n := apply([]Op{{Key: "w1", Value: id}}); n != 0 {
		t.Fatal("an identity applied again is a change")
	}
	same := func() {
		t.Helper()
		a := writer.Permissions(w1)
		b := follower.Permissions(w1)
		if !slices.Equal(a.Publish.Allow, b.Publish.Allow) || !slices.Equal(a.Subscribe.Allow, b.Subscribe.Allow) {
			t.Fatalf("the follower's permissions differ:\n%q\n%q", a.Publish.Allow, b.Publish.Allow)
		}
	}
	same()
	writer.Revoke("w1", func(k Key, _ protocol.Assignment) bool { return k.Job == 1 })
	if n := apply(writer.Take()); n != 1 {
		t.Fatalf("%d changes for one revocation", n)
	}
	same()
	if len(follower.Take()) != 0 {
		t.Error("applied entries were queued to be written again")
	}
	if changed, _ := follower.Apply("groups.w1", nil, true); !changed {
		t.Error("a deleted groups entry is not a change")
	}
	if changed, _ := follower.Apply("w1", nil, true); !changed || follower.Count() != 0 || len(follower.Holders("p")) != 0 {
		t.Error("a deleted identity is not removed with its grants")
	}
	for _, key := range []string{"grant.w1.p.x", "grant.w1.p"} {
		changed, err := follower.Apply(key, []byte("{}"), false)
		var ee *EntryError
		if changed || !errors.As(err, &ee) || ee.Kind != EntryGrant || ee.Err != nil {
			t.Errorf("malformed grant key %s: %v %v", key, changed, err)
		}
	}
	if _, err := follower.Apply("w2", []byte("{"), false); err == nil {
		t.Error("a malformed identity applied")
	}
}

func TestAppliedWaitsForTheRevision(t *testing.T) {
	var p Applied
	p.Mark(3)
	if got := p.Wait(2, time.Minute); got != 3 {
		t.Fatalf("Wait(2) at 3: %d", got)
	}
	done := make(chan uint64)
	go func() { done <- p.Wait(5, time.Minute) }()
	p.Mark(4) // before or after Wait starts: 4 does not end a wait for 5 either way
	select {
	case got := <-done:
		t.Fatalf("Wait(5) returned %d at 4", got)
	case <-time.After(20 * time.Millisecond):
	}
	p.Mark(2) // lower: nothing
	p.Mark(6)
	if got := <-done; got != 6 {
		t.Fatalf("Wait(5) returned %d, want 6", got)
	}
	start := time.Now()
	if got := p.Wait(9, 50*time.Millisecond); got != 6 || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("Wait(9) past its timeout: %d after %v", got, time.Since(start))
	}
}

// TestWriteMakesTheLastWriteOfEachKey against a JetStream KV bucket.
func TestWriteMakesTheLastWriteOfEachKey(t *testing.T) {
	if err := Write(nil, []Op{{Key: "a", Value: []byte("1")}}); err != nil {
		t.Fatalf("no bucket: %v", err)
	}
	ns, err := server.NewServer(&server.Options{ServerName: "access-test", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: Bucket, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	err = Write(kv, []Op{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("1")}, {Key: "a", Value: []byte("2")},
		{Key: "b"}, {Key: "gone"}})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(t.Context(), "a"); err != nil || string(e.Value()) != "2" {
		t.Fatalf("a: %v %v, want its last value", e, err)
	}
	st, err := js.Stream(t.Context(), protocol.KVStream(Bucket))
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.LastSeq; n != 4 { // "gone", then a, b and gone once each
		t.Errorf("%d writes to the bucket, want 4: a key written more than once", n)
	}
	for _, k := range []string{"b", "gone"} {
		if _, err := kv.Get(t.Context(), k); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("%s: %v, want deleted", k, err)
		}
	}
}
