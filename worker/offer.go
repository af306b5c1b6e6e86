package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Placement by offer (DESIGN.md §8). The worker hears its groups' subjects
// (protocol.WorkerInfo.GroupSubjects) and offers on its own subject (a job's `node`); it bids for
// a job it can take now — the Go type carried, an executable's program or interpreter present, a
// free slot — with its current load, or declines and says why. The broker picks one bidder and
// reserves its slot (VerbReserve): the reservation is what books the slot, checked and taken
// under w.mu, so two placements at once never get the same last slot.

// reservation holds a slot for a job the broker chose this worker for, until its prepare.
type reservation struct {
	epoch uint64
	until time.Time
}

// subscribeOffers subscribes to the offers and announcements of the worker's groups and to the
// offers on its own subject. Called once registered (the broker grants the group subjects to an
// enrolled worker identity when it registers) and before the first heartbeat, which tells the
// broker the worker bids from now on.
func (w *Worker) subscribeOffers() ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, subj := range append(w.info.GroupSubjects(), protocol.WorkerSubject(w.opts.Name, protocol.VerbOffer)) {
		sub, err := w.nc.Subscribe(subj, w.onGroupMessage)
		if err != nil {
			return subs, fmt.Errorf("worker: subscribe %s: %w", subj, err)
		}
		subs = append(subs, sub)
	}
	return subs, w.nc.Flush()
}

// onGroupMessage answers an offer with a bid, or an announcement to the group (drain, shutdown)
// with a GroupReply.
func (w *Worker) onGroupMessage(m *nats.Msg) {
	var reply any
	switch verb := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]; verb {
	case protocol.VerbOffer:
		var o protocol.Offer
		if err := json.Unmarshal(m.Data, &o); err != nil {
			reply = protocol.Bid{Worker: w.opts.Name, Reason: "bad offer: " + err.Error()}
			break
		}
		reply = w.bid(&o.Job)
	case protocol.VerbGroupLeave:
		r := protocol.GroupReply{Worker: w.opts.Name, Reply: protocol.Reply{OK: true}}
		if _, err := w.handleLeave(m.Data); err != nil {
			r.Reply = protocol.Reply{Error: err.Error()}
		}
		reply = r
	case protocol.VerbGroupShutdown:
		w.log.Info("shutdown announced to the group; stopping as on SIGTERM", "subject", m.Subject)
		reply = protocol.GroupReply{Worker: w.opts.Name, Reply: protocol.Reply{OK: true}}
		defer w.shutdown() // once answered
	default:
		reply = protocol.GroupReply{Worker: w.opts.Name, Reply: protocol.Reply{Error: fmt.Sprintf("worker %s: unknown group verb %q on %s", w.opts.Name, verb, m.Subject)}}
	}
	if m.Reply == "" {
		return
	}
	if err := m.Respond(protocol.Answer(reply, nil)); err != nil {
		w.log.Warn("reply failed", "subject", m.Subject, "error", err)
	}
}

// bid says whether this worker can take a job now, with its load.
func (w *Worker) bid(j *pipeline.Job) protocol.Bid {
	b := protocol.Bid{Worker: w.opts.Name, Slots: w.info.Capacity()}
	if m := w.lastMetrics.Load(); m != nil {
		b.Metrics = *m
	}
	if err := w.canRun(j); err != nil {
		b.Reason = err.Error()
		return b
	}
	w.mu.Lock()
	b.Free = b.Slots - w.slotsUsedLocked(time.Now())
	closing := w.closing
	w.mu.Unlock()
	switch {
	case closing:
		b.Reason = "the worker is leaving"
	case b.Free <= 0:
		b.Reason = fmt.Sprintf("no free slot (%d of %d in use)", b.Slots-b.Free, b.Slots)
	default:
		b.OK = true
	}
	return b
}

// slotsUsedLocked counts the slots taken: the jobs here (prepared or running) and the
// reservations not yet prepared nor expired. Callers hold w.mu.
func (w *Worker) slotsUsedLocked(now time.Time) int {
	n := len(w.tasks)
	for k, r := range w.reserved {
		if now.After(r.until) {
			delete(w.reserved, k) // the broker that reserved it never prepared the job
			continue
		}
		if _, ok := w.tasks[k]; !ok {
			n++
		}
	}
	return n
}

// handleReserve books a slot for a job the broker chose this worker for; it is refused when no
// slot is free any more (another placement took the last one meanwhile).
func (w *Worker) handleReserve(data []byte) (any, error) {
	var ref protocol.JobRef
	if err := json.Unmarshal(data, &ref); err != nil {
		return nil, fmt.Errorf("reserve: %w", err)
	}
	key := taskKey{ref.Pipeline, ref.Job}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return nil, fmt.Errorf("worker %s is leaving", w.opts.Name)
	}
	if r, ok := w.reserved[key]; ok && r.epoch == ref.Epoch {
		return nil, nil // a retried reservation
	}
	delete(w.reserved, key) // an older reservation of the same job gives way
	if used, slots := w.slotsUsedLocked(now), w.info.Capacity(); used >= slots {
		return nil, fmt.Errorf("no free slot any more (%d of %d in use)", used, slots)
	}
	w.reserved[key] = reservation{epoch: ref.Epoch, until: now.Add(protocol.ReserveTTL)}
	return nil, nil
}

// releaseReservationsLocked drops the reservations a stop names (ref.Job 0: every job of the
// pipeline; ref.Epoch 0: any epoch). Callers hold w.mu.
func (w *Worker) releaseReservationsLocked(ref protocol.JobRef) {
	for k, r := range w.reserved {
		if k.pipeline == ref.Pipeline && (ref.Job == 0 || k.job == ref.Job) && (ref.Epoch == 0 || r.epoch == ref.Epoch) {
			delete(w.reserved, k)
		}
	}
}

// canRun says why this worker cannot run a job, if it cannot: a Go type it does not carry, an
// executable whose program or interpreter it lacks, or a Python job whose interpreter is missing
// or does not import what the job requires.
func (w *Worker) canRun(j *pipeline.Job) error {
	if j.Python != nil {
		return w.python.CanRun(context.Background(), j.Python) // bounded inside
	}
	if j.Exec == nil {
		if !slices.Contains(w.info.Types, j.Type) {
			return fmt.Errorf("does not carry job type %q", j.Type)
		}
		return nil
	}
	return canExec(j.Exec)
}

// interpreters are the programs that run a script by its extension, for a script this worker
// cannot read yet (it comes with the job's dependencies).
var interpreters = map[string]string{
	".py": "python3", ".sh": "sh", ".bash": "bash", ".pl": "perl", ".rb": "ruby", ".js": "node",
	".R": "Rscript", ".lua": "lua", ".tcl": "tclsh",
}

// canExec checks that an executable job could start here: a program named by an absolute path
// exists; a bare name not shipped with the dependencies is on PATH; a program here is executable
// and its `#!` interpreter present; a script still to come with the dependencies has the
// interpreter of its extension.
func canExec(e *pipeline.Exec) error {
	path, shipped := e.Path, e.Dependencies != ""
	local := programHere(e, "") // the dependencies are not here yet
	switch {
	case path == "":
		return fmt.Errorf("exec.path is empty")
	case local != "":
		return programReady(local, path)
	case shipped:
	case filepath.IsAbs(path):
		return fmt.Errorf("executable %s is not on this worker", path)
	case !strings.ContainsRune(path, '/'):
		return fmt.Errorf("executable %q is not on PATH", path)
	}
	if interp := interpreters[filepath.Ext(path)]; interp != "" {
		return present(interp, path)
	}
	return nil
}

// programHere finds an executable job's program on this machine, as the job would find it:
// in depsDir, where its dependencies folder is here ("" when it is not: on a worker, before the
// job comes), at its absolute path, or on PATH for a bare name not in depsDir. "" when it is not
// here. It is what a worker bids on (canExec) and what validate checks (CheckFiles).
func programHere(e *pipeline.Exec, depsDir string) string {
	path := e.Path
	switch {
	case path == "":
	case filepath.IsAbs(path):
		if _, err := os.Stat(path); err == nil {
			return path
		}
	case depsDir != "" && (strings.ContainsRune(path, '/') || exists(filepath.Join(depsDir, path))):
		if f := filepath.Join(depsDir, path); exists(f) {
			return f
		}
	case !strings.ContainsRune(path, '/'):
		if bin, err := exec.LookPath(path); err == nil {
			return bin
		}
	}
	return ""
}

func exists(file string) bool {
	_, err := os.Stat(file)
	return err == nil
}

// programReady checks a program file here: a file, executable, and the interpreter its `#!`
// line names present (a file without one is a binary, or one it reads at start). script names
// the program in messages.
func programReady(file, script string) error {
	st, err := os.Stat(file)
	switch {
	case err != nil:
		return err
	case st.IsDir():
		return fmt.Errorf("%s is a folder, not a program", file)
	case st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable: chmod +x it", file)
	}
	interp, err := shebang(file)
	if err != nil || interp == "" {
		return nil
	}
	return present(interp, script)
}

// present checks that a script's interpreter is on this worker: an absolute path exists, a bare
// name is on PATH.
func present(interp, script string) error {
	if filepath.IsAbs(interp) {
		if _, err := os.Stat(interp); err != nil {
			return fmt.Errorf("%s needs %s, which is not on this worker", script, interp)
		}
		return nil
	}
	if _, err := exec.LookPath(interp); err != nil {
		return fmt.Errorf("%s needs %s, which is not on PATH", script, interp)
	}
	return nil
}

// shebang returns the interpreter a script's `#!` line names ("" for a file without one): the
// program after /usr/bin/env, else the line's program.
func shebang(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	rest, ok := strings.CutPrefix(line, "#!")
	if !ok {
		return "", nil
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil
	}
	if filepath.Base(fields[0]) != "env" {
		return fields[0], nil
	}
	for _, a := range fields[1:] {
		if !strings.HasPrefix(a, "-") && !strings.Contains(a, "=") {
			return a, nil
		}
	}
	return "", nil
}
