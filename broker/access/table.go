package access

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Table holds the enrolled identities, the jobs' subjects granted to the worker identities
// (grants), the subjects of the groups each worker registered with, and the permission
// violations counted per identity. Every change counts one generation (Gen) and queues the
// bucket writes that make it last (Take, Write): grants are kept in the bucket as
// "grant.WORKER.PIPELINE.JOB" and groups as "groups.WORKER", beside the identities, so that a
// broker restarted with its store gives the workers back what they had.
//
// A Table is not safe for concurrent use: its owner guards it with one lock, which also makes a
// change, its generation and the writes it queued one step (package broker's access.mu).
type Table struct {
	ids        map[string]Identity // name → identity
	grants     map[string]map[Key]protocol.Assignment
	groups     map[string][]string // worker → the subjects of its groups (placement by offer)
	clients    map[uint64]string   // NATS client id → identity name, for violations
	violations map[string]uint64   // identity name → permission violations
	gen        uint64              // counts the changes
	queued     []Op                // the bucket writes of the changes not taken yet, in order
}

// Key names a grant: one job of a pipeline.
type Key struct {
	Pipeline string
	Job      int
}

// Op is a write of the bucket queued by a change of the table: a put, or a delete (Value nil).
type Op struct {
	Key   string
	Value []byte
}

// Placed is an assignment placed on a worker, with its bucket entry (its JSON, which the caller
// makes before it takes its lock).
type Placed struct {
	Worker     string
	Assignment protocol.Assignment
	Entry      []byte
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{ids: map[string]Identity{}, grants: map[string]map[Key]protocol.Assignment{},
		groups: map[string][]string{}, clients: map[uint64]string{}, violations: map[string]uint64{}}
}

// Groups returns the group subjects worker registered with (a copy).
func (t *Table) Groups(worker string) []string { return slices.Clone(t.groups[worker]) }

// Gen is the generation of the table: it grows with every change.
func (t *Table) Gen() uint64 { return t.gen }

// Touch counts a change made by Load, and returns the generation.
func (t *Table) Touch() uint64 {
	t.gen++
	return t.gen
}

// Take returns the bucket writes queued since the last Take, in the order of the changes.
func (t *Table) Take() []Op {
	ops := t.queued
	t.queued = nil
	return ops
}

// Identity returns the identity enrolled under name.
func (t *Table) Identity(name string) (Identity, bool) {
	id, ok := t.ids[name]
	return id, ok
}

// Enrolled reports whether name is an enrolled worker identity: its permissions follow placement.
func (t *Table) Enrolled(name string) bool { return t.ids[name].Role == RoleWorker }

// Count is the number of identities.
func (t *Table) Count() int { return len(t.ids) }

// All lists the identities, in no order.
func (t *Table) All() []Identity {
	ids := make([]Identity, 0, len(t.ids))
	for _, id := range t.ids {
		ids = append(ids, id)
	}
	return ids
}

// Add enrols an identity. Its bucket entry is the caller's to write (created, not put: of two
// enrolments of one name, the bucket refuses the second).
func (t *Table) Add(id Identity) {
	t.ids[id.Name] = id
	t.gen++
}

// Remove forgets an identity with its grants and groups. Its bucket entry is the caller's to
// delete.
func (t *Table) Remove(name string) {
	delete(t.ids, name)
	delete(t.grants, name)
	delete(t.groups, name)
	t.gen++
}

// Permissions are what an identity may do now: nil (everything) for an operator.
func (t *Table) Permissions(id Identity) *server.Permissions {
	switch id.Role {
	case RoleOperator:
		return nil
	case RoleReader:
		return ReaderPermissions(id.Name)
	}
	var grants []protocol.Assignment
	for _, g := range t.grants[id.Name] {
		grants = append(grants, g)
	}
	return WorkerPermissions(id.Name, t.groups[id.Name], grants)
}

// Grant gives each worker identity the subjects of the assignments placed on it (others — the
// shared worker token's workers — have nothing to grant), as one change; an assignment granted
// already as it is is not granted again. It reports whether anything changed.
func (t *Table) Grant(placed []Placed) (changed bool) {
	for _, p := range placed {
		if t.ids[p.Worker].Role != RoleWorker {
			continue
		}
		g := t.grants[p.Worker]
		if g == nil {
			g = map[Key]protocol.Assignment{}
			t.grants[p.Worker] = g
		}
		k := Key{p.Assignment.Pipeline, p.Assignment.Job.ID}
		if old, ok := g[k]; ok && reflect.DeepEqual(old, p.Assignment) {
			continue
		}
		g[k] = p.Assignment
		t.queued = append(t.queued, Op{Key: grantKey(p.Worker, k), Value: p.Entry})
		changed = true
	}
	if changed {
		t.gen++
	}
	return changed
}

// Revoke takes from worker the grants that match, as one change, and reports whether any did.
func (t *Table) Revoke(worker string, match func(Key, protocol.Assignment) bool) bool {
	gone := 0
	for k, g := range t.grants[worker] {
		if match(k, g) {
			delete(t.grants[worker], k)
			t.queued = append(t.queued, Op{Key: grantKey(worker, k)})
			gone++
		}
	}
	if gone == 0 {
		return false
	}
	t.gen++
	return true
}

// Holders are the workers granted a job of pipeline, in no order.
func (t *Table) Holders(pipeline string) []string {
	var holders []string
	for w, g := range t.grants {
		for k := range g {
			if k.Pipeline == pipeline {
				holders = append(holders, w)
				break
			}
		}
	}
	return holders
}

// SetGroups gives worker the subjects of its groups, sorted, with their bucket entry (their
// JSON); it reports whether they changed.
func (t *Table) SetGroups(worker string, subjects []string, entry []byte) bool {
	if slices.Equal(t.groups[worker], subjects) {
		return false
	}
	t.groups[worker] = subjects
	t.queued = append(t.queued, Op{Key: groupsPrefix + worker, Value: entry})
	t.gen++
	return true
}

// Connected records the identity of a client of the server, to name it in its violations.
func (t *Table) Connected(client uint64, name string) { t.clients[client] = name }

// Violation counts a permission violation of a client, and returns the identity it is counted
// for: "token client" for a client of a shared token.
func (t *Table) Violation(client uint64) string {
	name, ok := t.clients[client]
	if !ok {
		name = "token client"
	}
	t.violations[name]++
	return name
}

// Violations returns a copy of the violations counted per identity.
func (t *Table) Violations() map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range t.violations {
		out[k] = v
	}
	return out
}

// ---- the bucket ----

const (
	grantPrefix  = "grant."
	groupsPrefix = "groups."
)

func grantKey(worker string, k Key) string {
	return grantPrefix + worker + "." + k.Pipeline + "." + strconv.Itoa(k.Job)
}

// Kind is what an entry of the bucket is.
type Kind int

const (
	EntryIdentity Kind = iota
	EntryGrant
	EntryGroups
)

func (k Kind) String() string {
	switch k {
	case EntryGrant:
		return "grant"
	case EntryGroups:
		return "groups"
	}
	return "identity"
}

// An EntryError is an entry of the bucket the table could not read: its value (Err), or, for a
// grant applied from a watch (Apply), its key (Err nil).
type EntryError struct {
	Kind Kind
	Err  error
}

func (e *EntryError) Error() string {
	if e.Err == nil {
		return "malformed " + e.Kind.String() + " key"
	}
	return e.Kind.String() + ": " + e.Err.Error()
}

func (e *EntryError) Unwrap() error { return e.Err }

// Load puts an entry of the bucket, read when the broker starts, in the table, and tells what it
// is; an entry it cannot read is an *EntryError wrapping the value's error. It is not counted as a
// change (Touch counts the entries loaded); a grant is filed under the job its value names.
func (t *Table) Load(key string, value []byte) (Kind, error) {
	if worker, ok := strings.CutPrefix(key, groupsPrefix); ok {
		var subjects []string
		if err := json.Unmarshal(value, &subjects); err != nil {
			return EntryGroups, &EntryError{EntryGroups, err}
		}
		t.groups[worker] = subjects
		return EntryGroups, nil
	}
	if worker, ok := grantWorker(key); ok {
		var as protocol.Assignment
		if err := json.Unmarshal(value, &as); err != nil {
			return EntryGrant, &EntryError{EntryGrant, err}
		}
		if t.grants[worker] == nil {
			t.grants[worker] = map[Key]protocol.Assignment{}
		}
		t.grants[worker][Key{as.Pipeline, as.Job.ID}] = as
		return EntryGrant, nil
	}
	var id Identity
	if err := json.Unmarshal(value, &id); err != nil {
		return EntryIdentity, &EntryError{EntryIdentity, err}
	}
	t.ids[id.Name] = id
	return EntryIdentity, nil
}

func grantWorker(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, grantPrefix)
	if !ok {
		return "", false
	}
	w, _, ok := strings.Cut(rest, ".")
	return w, ok
}

// Apply puts a change of the bucket, watched, in the table (del: the key was deleted or purged);
// it reports whether the table changed (the broker that wrote it has it already), each change
// counted. A grant is filed under the job its key names. Nothing is queued: the change is in the
// bucket already.
func (t *Table) Apply(key string, value []byte, del bool) (bool, error) {
	if worker, rest, ok := strings.Cut(strings.TrimPrefix(key, grantPrefix), "."); ok && strings.HasPrefix(key, grantPrefix) {
		i := strings.LastIndexByte(rest, '.')
		job, err := strconv.Atoi(rest[i+1:])
		if i < 0 || err != nil {
			return false, &EntryError{Kind: EntryGrant}
		}
		k := Key{rest[:i], job}
		old, had := t.grants[worker][k]
		if del {
			if !had {
				return false, nil
			}
			delete(t.grants[worker], k)
			t.gen++
			return true, nil
		}
		if had {
			if b, err := json.Marshal(old); err == nil && bytes.Equal(b, value) {
				return false, nil
			}
		}
		var as protocol.Assignment
		if err := json.Unmarshal(value, &as); err != nil {
			return false, &EntryError{EntryGrant, err}
		}
		if t.grants[worker] == nil {
			t.grants[worker] = map[Key]protocol.Assignment{}
		}
		t.grants[worker][k] = as
		t.gen++
		return true, nil
	}
	if worker, ok := strings.CutPrefix(key, groupsPrefix); ok {
		return t.applyGroups(worker, value, del)
	}
	old, had := t.ids[key]
	if del {
		if !had {
			return false, nil
		}
		delete(t.ids, key)
		delete(t.grants, key)
		delete(t.groups, key)
		t.gen++
		return true, nil
	}
	var id Identity
	if err := json.Unmarshal(value, &id); err != nil {
		return false, &EntryError{EntryIdentity, err}
	}
	if had && reflect.DeepEqual(old, id) {
		return false, nil
	}
	t.ids[id.Name] = id
	t.gen++
	return true, nil
}

// applyGroups puts a worker's group subjects written by another broker in the table.
func (t *Table) applyGroups(worker string, value []byte, del bool) (bool, error) {
	if del {
		if _, had := t.groups[worker]; !had {
			return false, nil
		}
		delete(t.groups, worker)
		t.gen++
		return true, nil
	}
	var subjects []string
	if err := json.Unmarshal(value, &subjects); err != nil {
		return false, &EntryError{EntryGroups, err}
	}
	if slices.Equal(t.groups[worker], subjects) {
		return false, nil
	}
	t.groups[worker] = subjects
	t.gen++
	return true, nil
}

// writeParallel bounds the bucket writes of one Write in flight at once.
const writeParallel = 32

// Write makes the bucket writes taken from a table: the last of each key only (ops are in the
// order of the changes, so when Writes never overlap a key's writes land in that order), the
// keys at once. A nil kv (no bucket yet: a cluster's JetStream is starting) writes nothing: the
// tables carry the changes.
func Write(kv jetstream.KeyValue, ops []Op) error {
	if kv == nil || len(ops) == 0 {
		return nil
	}
	last := map[string]int{}
	for i, op := range ops {
		last[op.Key] = i
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sem := make(chan struct{}, writeParallel)
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		if last[op.Key] != i {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var err error
			if op.Value == nil {
				err = kv.Delete(ctx, op.Key)
			} else {
				_, err = kv.Put(ctx, op.Key, op.Value)
			}
			if err != nil {
				errs[i] = fmt.Errorf("identity bucket: %s: %w", op.Key, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
