package protocol

import (
	"strings"
	"testing"
)

func TestCredsRoundTripAndTokens(t *testing.T) {
	name, token, err := ParseCreds(FormatCreds("mic1", "worker", "s3cr-et_"))
	if err != nil || name != "mic1" || token != IdentityToken("mic1", "s3cr-et_") {
		t.Fatalf("ParseCreds: %q %q %v", name, token, err)
	}
	if n, s, ok := ParseIdentityToken(token); !ok || n != "mic1" || s != "s3cr-et_" {
		t.Fatalf("ParseIdentityToken(%q) = %q %q %v", token, n, s, ok)
	}
	for _, tok := range []string{"operator-token", "marvelo-id.", "marvelo-id.name", "marvelo-id..x", "marvelo-id.name."} {
		if _, _, ok := ParseIdentityToken(tok); ok {
			t.Errorf("ParseIdentityToken(%q) accepted", tok)
		}
	}
	if _, _, err := ParseCreds([]byte("token: marvelo-id.bad name.x\n")); err == nil {
		t.Error("a credentials file with a bad name was accepted")
	}
	if _, _, err := ParseCreds([]byte("hello\n")); err == nil {
		t.Error("a file without a token line was accepted")
	}
	if got := From(SubjHeartbeatPrefix, "w1"); got != SubjHeartbeatPrefix+"w1" || Sender(got) != "w1" {
		t.Errorf("From/Sender heartbeat: %q", got)
	}
	if got := From(SubjRegister, "w1"); got != SubjRegister+".w1" || Sender(got) != "w1" {
		t.Errorf("From/Sender register: %q", got)
	}
}

// TestCredsFileNamesTheRoleForMessages: the role written into a credentials file is read back and
// described as the errors name it; a file written before roles were noted has none.
func TestCredsFileNamesTheRoleForMessages(t *testing.T) {
	for role, want := range map[string]string{"worker": "a worker", "operator": "an operator", "reader": "a read-only operator"} {
		data := FormatCreds("x1", role, "s")
		if got := CredsRole(data); got != role {
			t.Errorf("CredsRole of a %s's file: %q", role, got)
		}
		if got := DescribeRole(CredsRole(data)); got != want {
			t.Errorf("DescribeRole(%q) = %q, want %q", role, got, want)
		}
		if name, _, err := ParseCreds(data); err != nil || name != "x1" {
			t.Errorf("ParseCreds of a file with a role line: %q %v", name, err)
		}
	}
	old := []byte("# marvelo identity: mic1\ntoken: " + IdentityToken("mic1", "s") + "\n")
	if got := CredsRole(old); got != "" || DescribeRole(got) != "" {
		t.Errorf("CredsRole of a file without a role line: %q", got)
	}
}

// TestRightNamesWhoseRightEachAPISubjectIs: every operator API subject is an operator's right,
// the read-only API and the log stream's subjects a read-only operator's too, and an unknown
// subject has no right to name.
func TestRightNamesWhoseRightEachAPISubjectIs(t *testing.T) {
	for subject, want := range map[string]string{
		SubjIdentityAdd:                   "enrolling identities is an operator's right",
		SubjStop:                          "stopping pipelines is an operator's right",
		SubjSubmit:                        "submitting pipelines is an operator's right",
		SubjStatus:                        "reading the status of pipelines is an operator's or a read-only operator's right",
		LogDirectGetSubject:               "reading the logs is an operator's or a read-only operator's right",
		LogDirectGetSubject + ".x.y":      "reading the logs is an operator's or a read-only operator's right",
		LogStreamInfoSubject:              "reading the logs is an operator's or a read-only operator's right",
		LogFilter("p"):                    "following the logs is an operator's or a read-only operator's right",
		LogSubject("p", 3):                "following the logs is an operator's or a read-only operator's right",
		EventSubject("p"):                 "following a pipeline's events is an operator's or a read-only operator's right",
		"$JS.API.STREAM.DELETE.SOMETHING": "",
	} {
		if got := Right(subject); got != want {
			t.Errorf("Right(%q) = %q, want %q", subject, got, want)
		}
	}
	for _, s := range []string{SubjIdentityRemove, SubjReset, SubjDrain, SubjUncordon, SubjRemove} {
		if !strings.HasSuffix(Right(s), " is an operator's right") {
			t.Errorf("Right(%q) = %q", s, Right(s))
		}
	}
}
