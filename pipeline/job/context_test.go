package job

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestNotifyLogsAWarningAndReportsIt: Notify writes the warning to the job's log, with its
// attributes, and hands the message to the worker's Notice; without one it only logs.
func TestNotifyLogsAWarningAndReportsIt(t *testing.T) {
	var logged bytes.Buffer
	var reported []string
	c := NewContext(context.Background(), ContextConfig{
		Log:    slog.New(slog.NewTextHandler(&logged, nil)),
		Notice: func(msg string) { reported = append(reported, msg) },
	})
	c.Notify("file started again", "worker", "wc")
	if got := logged.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, `msg="file started again"`) || !strings.Contains(got, "worker=wc") {
		t.Errorf("log %q: want the warning with its attributes", got)
	}
	if len(reported) != 1 || reported[0] != "file started again" {
		t.Errorf("reported %q, want the message once", reported)
	}
	NewContext(context.Background(), ContextConfig{}).Notify("nobody listens") // no Notice: no panic
}
