package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExactlyOnceNamesWhatDiffers(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		rows string
		ok   bool
		want string
	}{
		{"value\n1\n2\n3\n", true, ""},
		{"value\n1\n3\n", false, "2 rows, want 3"},
		{"value\n1\n1\n3\n", false, `row 2 is "1", want 2`},
	} {
		path := filepath.Join(dir, "out.csv")
		if err := os.WriteFile(path, []byte(c.rows), 0o644); err != nil {
			t.Fatal(err)
		}
		ok, err := exactlyOnce(path, 3)
		if ok != c.ok || (c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want))) {
			t.Errorf("exactlyOnce(%q) = %v, %v; want %v, %q", c.rows, ok, err, c.ok, c.want)
		}
	}
}
