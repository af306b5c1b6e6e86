package protocol

import "testing"

func TestCredsRoundTripAndTokens(t *testing.T) {
	name, token, err := ParseCreds(FormatCreds("mic1", "s3cr-et_"))
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
