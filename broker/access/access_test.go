package access

import (
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

func TestValidateRefusesWhatCannotBeEnrolled(t *testing.T) {
	hash := HashSecret("s")
	for _, tc := range []struct {
		id   Identity
		want string // "" accepted
	}{
		{Identity{Name: "w1", Role: RoleWorker, Hash: hash}, ""},
		{Identity{Name: "w1", Role: RoleWorker, Hash: hash, Groups: []string{"dsp"}}, ""},
		{Identity{Name: "op", Role: RoleOperator, Hash: hash}, ""},
		{Identity{Name: "r", Role: RoleReader, Hash: hash}, ""},
		{Identity{Name: "a.b", Role: RoleWorker, Hash: hash}, "identity"},
		{Identity{Name: "w1", Role: "admin", Hash: hash}, `unknown role "admin"`},
		{Identity{Name: "w1", Role: RoleWorker, Hash: "abc"}, "not a hex SHA-256"},
		{Identity{Name: "op", Role: RoleOperator, Hash: hash, Groups: []string{"dsp"}}, "only a worker is enrolled with groups"},
		{Identity{Name: "w1", Role: RoleWorker, Hash: hash, Groups: []string{"a>"}}, "identity w1: "},
	} {
		err := tc.id.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v refused: %v", tc.id, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v, want an error with %q", tc.id, err, tc.want)
		}
	}
}

func TestAnIdentityIsProvedByItsSecretOnly(t *testing.T) {
	id := Identity{Name: "w1", Role: RoleWorker, Hash: HashSecret("secret")}
	if len(id.Hash) != 64 || strings.ToLower(id.Hash) != id.Hash {
		t.Fatalf("hash %q is not lower-case hex SHA-256", id.Hash)
	}
	if !id.Proves(HashSecret("secret")) {
		t.Error("its secret does not prove it")
	}
	for _, s := range []string{"", "secreT", "secret "} {
		if id.Proves(HashSecret(s)) {
			t.Errorf("secret %q proves it", s)
		}
	}
}

func TestAWorkerConnectionNamesOnlyItsOwnIdentity(t *testing.T) {
	if !ConnNameFits("w1", protocol.WorkerConnName("w1")) {
		t.Error("a worker's own connection name refused")
	}
	if ConnNameFits("w1", protocol.WorkerConnName("w2")) {
		t.Error("another worker's connection name accepted")
	}
	if !ConnNameFits("w1", "some tool") {
		t.Error("a name that is no worker's refused")
	}
}

func TestSenderIsTheWorkerOfTheSubject(t *testing.T) {
	if err := SenderIs(protocol.From(protocol.SubjRegister, "w1"), "w1"); err != nil {
		t.Error(err)
	}
	err := SenderIs(protocol.From(protocol.SubjRegister, "w2"), "w1")
	if err == nil || !strings.Contains(err.Error(), `sent by worker "w2" on behalf of "w1": refused`) {
		t.Errorf("another worker's subject: %v", err)
	}
}

func TestClaimsAWorkerIdentityMayNotMake(t *testing.T) {
	free := Identity{Name: "w", Role: RoleWorker}
	grouped := Identity{Name: "w", Role: RoleWorker, Groups: []string{"ga"}}
	for _, tc := range []struct {
		id   Identity
		info protocol.WorkerInfo
		want string // "" accepted
	}{
		{free, protocol.WorkerInfo{Name: "w", Groups: []string{"x"}}, ""},
		{free, protocol.WorkerInfo{Name: "w", Local: true}, "may not register as the head node's worker (local)"},
		{free, protocol.WorkerInfo{Name: "w", Any: true}, "may not register as a worker of every group (any)"},
		{grouped, protocol.WorkerInfo{Name: "w", Groups: []string{"ga"}}, ""},
		{grouped, protocol.WorkerInfo{Name: "w"}, ""},
		{grouped, protocol.WorkerInfo{Name: "w", Groups: []string{"ga", "gb"}}, "is enrolled for groups ga, not gb"},
		// Not a worker identity (a shared token's worker: no identity): trusted as its token is.
		{Identity{}, protocol.WorkerInfo{Name: "w", Local: true, Any: true}, ""},
		{Identity{Name: "w", Role: RoleOperator}, protocol.WorkerInfo{Name: "w", Local: true}, ""},
	} {
		err := CheckClaims(tc.id, tc.info)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v by %+v refused: %v", tc.info, tc.id, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v by %+v: %v, want refused with %q", tc.info, tc.id, err, tc.want)
		}
	}
}

func TestParseViolation(t *testing.T) {
	cid, kind, subject, ok := ParseViolation(`127.0.0.1:5 - cid:42 - "v1.0:go:w1" - Publish Violation - Subject "marvelo.p.pipe.2"`)
	if !ok || cid != 42 || kind != "Publish" || subject != "marvelo.p.pipe.2" {
		t.Errorf("publish: %d %q %q %v", cid, kind, subject, ok)
	}
	cid, kind, subject, ok = ParseViolation(`cid:7 - Subscription Violation - Subject "marvelo.>", SID 1`)
	if !ok || cid != 7 || kind != "Subscription" || subject != "marvelo.>" {
		t.Errorf("subscription: %d %q %q %v", cid, kind, subject, ok)
	}
	if _, _, _, ok := ParseViolation("cid:7 - Client parser ERROR"); ok {
		t.Error("another error read as a violation")
	}
}
