package broker

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The permission lists below are spelled out literally, as WorkerPermissions, readerPermissions
// and workerDenied produced them before their subjects were built by pipeline/protocol (issue
// 23): a rename in protocol that widens or narrows a right fails here instead of silently
// opening or closing it.

// permissionSample is one worker's two jobs: job 5 reads a stored pipe (101) and a realtime one
// (102) and writes a stored pipe (105) and a realtime one (106); job 6 reads 105.
func permissionSample() []protocol.Assignment {
	stored := func(pipe, job int, epoch uint64) protocol.PipeBinding {
		return protocol.PipeBinding{ID: pipe, Subject: protocol.PipeSubject("demo", pipe),
			Stream: protocol.PipeStream("demo", pipe), Consumer: protocol.PipeConsumer(job, epoch)}
	}
	realtime := func(pipe int) protocol.PipeBinding {
		return protocol.PipeBinding{ID: pipe, Subject: protocol.PipeSubject("demo", pipe), Realtime: true}
	}
	return []protocol.Assignment{
		{Pipeline: "demo", Epoch: 3, Job: pipeline.Job{ID: 5},
			Inputs:  []protocol.PipeBinding{stored(101, 5, 3), realtime(102)},
			Outputs: []protocol.PipeBinding{stored(105, 6, 1), realtime(106)}},
		{Pipeline: "demo", Epoch: 1, Job: pipeline.Job{ID: 6}, Inputs: []protocol.PipeBinding{stored(105, 6, 1)}},
	}
}

func TestWorkerPermissionsOfASampleAssignmentAreExactlyTheseSubjects(t *testing.T) {
	p := WorkerPermissions("w1", protocol.WorkerInfo{Groups: []string{"dsp"}}.GroupSubjects(), permissionSample())
	samePermissionList(t, "publish", p.Publish.Allow, []string{
		"$JS.ACK.MARVELO_demo_101.job5-e3.>",
		"$JS.ACK.MARVELO_demo_105.job6-e1.>",
		"$JS.API.CONSUMER.INFO.MARVELO_demo_101.job5-e3",
		"$JS.API.CONSUMER.INFO.MARVELO_demo_105.job6-e1",
		"$JS.API.CONSUMER.MSG.NEXT.MARVELO_demo_101.job5-e3",
		"$JS.API.CONSUMER.MSG.NEXT.MARVELO_demo_105.job6-e1",
		"$JS.API.DIRECT.GET.KV_marvelo_checkpoints.$KV.marvelo_checkpoints.demo.5",
		"$JS.API.DIRECT.GET.KV_marvelo_checkpoints.$KV.marvelo_checkpoints.demo.6",
		"$JS.API.DIRECT.GET.MARVELO_demo_105",
		"$JS.API.DIRECT.GET.MARVELO_demo_105.>",
		"$JS.API.DIRECT.GET.OBJ_marvelo_deps",
		"$JS.API.DIRECT.GET.OBJ_marvelo_deps.>",
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.KV_marvelo_checkpoints",
		"$JS.API.STREAM.INFO.MARVELO_demo_101",
		"$JS.API.STREAM.INFO.MARVELO_demo_105",
		"$JS.API.STREAM.INFO.OBJ_marvelo_deps",
		"$JS.API.STREAM.MSG.GET.MARVELO_demo_101",
		"$JS.API.STREAM.MSG.GET.MARVELO_demo_105",
		"$KV.marvelo_checkpoints.demo.5",
		"$KV.marvelo_checkpoints.demo.6",
		"_INBOX_marvelo_broker.>",
		"marvelo.ctl.deregister.w1",
		"marvelo.ctl.heartbeat.w1",
		"marvelo.ctl.jobstate.w1",
		"marvelo.ctl.leave.w1",
		"marvelo.ctl.register.w1",
		"marvelo.demo.log.5",
		"marvelo.demo.log.6",
		"marvelo.demo.pipe.105",
		"marvelo.demo.pipe.106",
	})
	samePermissionList(t, "subscribe", p.Subscribe.Allow, []string{
		"_INBOX.w1.>",
		"marvelo-rt.*.marvelo.demo.pipe.102",
		"marvelo.demo.pipe.102",
		"marvelo.demo.stdin.5",
		"marvelo.demo.stdin.6",
		"marvelo.group.ALL.>",
		"marvelo.group.dsp.>",
		"marvelo.worker.w1.>",
	})
	if p.Publish.Deny != nil || p.Subscribe.Deny != nil || p.Response != nil {
		t.Errorf("worker permissions have deny lists or a response permission: %+v", p)
	}
}

func TestWorkerPermissionsWithoutJobsAreItsControlSubjectsAndDependenciesOnly(t *testing.T) {
	p := WorkerPermissions("w1", nil, nil)
	samePermissionList(t, "publish", p.Publish.Allow, []string{
		"$JS.API.DIRECT.GET.OBJ_marvelo_deps",
		"$JS.API.DIRECT.GET.OBJ_marvelo_deps.>",
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.KV_marvelo_checkpoints",
		"$JS.API.STREAM.INFO.OBJ_marvelo_deps",
		"_INBOX_marvelo_broker.>",
		"marvelo.ctl.deregister.w1",
		"marvelo.ctl.heartbeat.w1",
		"marvelo.ctl.jobstate.w1",
		"marvelo.ctl.leave.w1",
		"marvelo.ctl.register.w1",
	})
	samePermissionList(t, "subscribe", p.Subscribe.Allow, []string{"_INBOX.w1.>", "marvelo.worker.w1.>"})
}

func TestReaderPermissionsAreExactlyTheseSubjects(t *testing.T) {
	p := readerPermissions("r1")
	samePermissionList(t, "publish", p.Publish.Allow, []string{
		"marvelo.api.status",
		"marvelo.api.workers",
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.MARVELO_LOGS",
		"$JS.API.DIRECT.GET.MARVELO_LOGS",
		"$JS.API.DIRECT.GET.MARVELO_LOGS.>",
	})
	samePermissionList(t, "subscribe", p.Subscribe.Allow, []string{
		"_INBOX.r1.>",
		"marvelo.ctl.heartbeat.*",
		"marvelo.*.event",
		"marvelo.*.log.>",
	})
	if p.Publish.Deny != nil || p.Subscribe.Deny != nil || p.Response != nil {
		t.Errorf("reader permissions have deny lists or a response permission: %+v", p)
	}
}

func TestTheWorkerTokenIsDeniedExactlyTheseSubjects(t *testing.T) {
	samePermissionList(t, "worker token publish deny", workerDenied, []string{
		"marvelo.api.>",
		"$JS.API.STREAM.CREATE.>",
		"$JS.API.STREAM.UPDATE.>",
		"$JS.API.STREAM.DELETE.>",
		"$JS.API.STREAM.PURGE.>",
		"$JS.API.STREAM.MSG.DELETE.>",
		"$JS.API.CONSUMER.DURABLE.CREATE.>",
		"$KV.marvelo_pipelines.>",
		"$KV.marvelo_workers.>",
		"$O.marvelo_deps.>",
		"marvelo.sys.>",
	})
}

// samePermissionList fails unless got is want, in the same order.
func samePermissionList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for _, s := range got {
		if !slices.Contains(want, s) {
			t.Errorf("%s: granted %q, which it was not before", what, s)
		}
	}
	for _, s := range want {
		if !slices.Contains(got, s) {
			t.Errorf("%s: no longer granted %q", what, s)
		}
	}
	if !t.Failed() {
		t.Errorf("%s: the same subjects in another order:\n got  %q\n want %q", what, got, want)
	}
}

// TestProtocolSpellsJetStreamSubjectsAsTheServerDoes: every JetStream API subject protocol builds
// the permissions from is the one nats-server answers on (its JSApi…T templates).
func TestProtocolSpellsJetStreamSubjectsAsTheServerDoes(t *testing.T) {
	const s, c, subj = "S", "C", "a.b"
	for _, tc := range []struct{ got, want string }{
		{protocol.JSAPIInfo, server.JSApiAccountInfo},
		{protocol.JSStreamInfo(s), fmt.Sprintf(server.JSApiStreamInfoT, s)},
		{protocol.JSStreamMsgGet(s), fmt.Sprintf(server.JSApiMsgGetT, s)},
		{protocol.JSDirectGet(s), fmt.Sprintf(server.JSDirectMsgGetT, s)},
		{protocol.JSDirectGetLast(s, subj), fmt.Sprintf(server.JSDirectGetLastBySubjectT, s, subj)},
		{protocol.JSConsumerInfo(s, c), fmt.Sprintf(server.JSApiConsumerInfoT, s, c)},
		{protocol.JSMsgNext(s, c), fmt.Sprintf(server.JSApiRequestNextT, s, c)},
		{protocol.JSStreamLeaderStepDown(s), fmt.Sprintf(server.JSApiStreamLeaderStepDownT, s)},
		{protocol.JSConsumerLeaderStepDown(s, c), fmt.Sprintf(server.JSApiConsumerLeaderStepDownT, s, c)},
		{protocol.LogStreamInfoSubject, fmt.Sprintf(server.JSApiStreamInfoT, protocol.LogStream)},
		{protocol.LogDirectGetSubject, fmt.Sprintf(server.JSDirectMsgGetT, protocol.LogStream)},
	} {
		if tc.got != tc.want {
			t.Errorf("protocol spells %q, the server answers on %q", tc.got, tc.want)
		}
	}
	// The requests that change JetStream: every subject below each template's fixed part.
	var changing []string
	for _, tmpl := range []string{server.JSApiStreamCreateT, server.JSApiStreamUpdateT, server.JSApiStreamDeleteT,
		server.JSApiStreamPurgeT, server.JSApiMsgDeleteT, server.JSApiDurableCreateT} {
		fixed, _, _ := strings.Cut(tmpl, ".%s")
		changing = append(changing, fixed+".>")
	}
	samePermissionList(t, "JetStream API that changes streams and consumers", protocol.JSChangingAPI(), changing)
}
