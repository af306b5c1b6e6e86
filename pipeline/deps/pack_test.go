package deps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tree builds a folder from a map of slash paths: "d/" is a folder, "l@" a link to the value,
// anything else a file with that content and the mode given in modes (default 0644).
func tree(t *testing.T, entries map[string]string, modes map[string]fs.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range entries {
		full := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(strings.TrimSuffix(name, "/"), "@")))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, "/"):
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasSuffix(name, "@"):
			if err := os.Symlink(v, full); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(full, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, m := range modes {
		if err := os.Chmod(filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(name, "/"))), m); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var sample = map[string]string{
	"run.sh":              "#!/bin/sh\necho hi\n",
	"lib/data/coeffs.txt": "1 2 3\n",
	"lib/empty/":          "",
	"coeffs@":             "lib/data/coeffs.txt",
	"lib/data/up@":        "../../run.sh",
	"a/" + strings.Repeat("long-name-", 15) + ".txt": "a name longer than 100 bytes\n",
	"secret": "private\n",
}

var sampleModes = map[string]fs.FileMode{"run.sh": 0o755, "secret": 0o600, "lib/empty/": 0o700}

func TestPackDeterministic(t *testing.T) {
	a := tree(t, sample, sampleModes)
	b := tree(t, sample, sampleModes)
	// Times and creation order must not matter.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(b, "run.sh"), old, old); err != nil {
		t.Fatal(err)
	}
	arA, digA, err := Pack(a)
	if err != nil {
		t.Fatal(err)
	}
	arB, digB, err := Pack(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(arA, arB) || digA != digB {
		t.Fatal("the same content in two folders gave different archives")
	}
	if digA != Digest(arA) || len(digA) != 64 {
		t.Errorf("digest %q is not the hex sha256 of the archive", digA)
	}
	// Entries sorted, times and owners zeroed, folders with a slash.
	zr, err := gzip.NewReader(bytes.NewReader(arA))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: time %v, owner %d:%d %q:%q", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
		}
	}
	want := []string{"a/", "a/" + strings.Repeat("long-name-", 15) + ".txt", "coeffs", "lib/", "lib/data/",
		"lib/data/coeffs.txt", "lib/data/up", "lib/empty/", "run.sh", "secret"}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	// A change of content or mode changes the digest.
	if err := os.Chmod(filepath.Join(b, "run.sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, d, _ := Pack(b); d == digA {
		t.Error("a mode change did not change the digest")
	}
}

func TestUnpackRoundTrip(t *testing.T) {
	src := tree(t, sample, sampleModes)
	ar, _, err := Pack(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "job", "7") // created by Unpack
	if err := Unpack(ar, dst); err != nil {
		t.Fatal(err)
	}
	for name, v := range sample {
		full := filepath.Join(dst, filepath.FromSlash(strings.TrimSuffix(strings.TrimSuffix(name, "/"), "@")))
		fi, err := os.Lstat(full)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		switch {
		case strings.HasSuffix(name, "/"):
			if !fi.IsDir() {
				t.Errorf("%s is not a folder", name)
			}
		case strings.HasSuffix(name, "@"):
			if got, _ := os.Readlink(full); fi.Mode()&fs.ModeSymlink == 0 || got != v {
				t.Errorf("%s: mode %v, link %q, want a link to %q", name, fi.Mode(), got, v)
			}
		default:
			if got, _ := os.ReadFile(full); string(got) != v {
				t.Errorf("%s: %q, want %q", name, got, v)
			}
		}
		want := fs.FileMode(0o644)
		if strings.HasSuffix(name, "/") {
			want = 0o755
		}
		if m, ok := sampleModes[name]; ok {
			want = m
		}
		if !strings.HasSuffix(name, "@") && fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "lib", "data", "up")); string(got) != sample["run.sh"] {
		t.Errorf("link up leads to %q", got)
	}
	// Unpacking again over the result replaces, and the umask does not narrow modes.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := Unpack(ar, dst); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "run.sh")); fi.Mode().Perm() != 0o755 {
		t.Errorf("run.sh mode %v after a second unpack under umask 077", fi.Mode().Perm())
	}
	// An empty folder packs into a valid empty archive.
	empty, _, err := Pack(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := Unpack(empty, t.TempDir()); err != nil {
		t.Error(err)
	}
}

func TestPackRefuses(t *testing.T) {
	outside := t.TempDir()
	for _, c := range []struct {
		name    string
		entries map[string]string
		want    string
	}{
		{"absolute link", map[string]string{"f": "x", "l@": filepath.Join(outside, "x")}, "link l points to " + outside},
		{"relative link out", map[string]string{"l@": "../x"}, "link l points to ../x, outside the folder"},
		{"link out from a subfolder", map[string]string{"d/l@": "../../x"}, "link d/l points to ../../x, outside the folder"},
		{"chain of links out", map[string]string{"x@": ".", "y@": "x/.."}, "link y points to x/.., which leads outside the folder"},
		{"dangling link", map[string]string{"l@": "missing"}, "link l points to missing, which cannot be followed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := tree(t, c.entries, nil)
			if _, _, err := Pack(dir); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Pack: %v, want %q", err, c.want)
			}
		})
	}
	dir := tree(t, map[string]string{"f": "x"}, nil)
	if err := os.Symlink(filepath.Join(dir, "f"), filepath.Join(dir, "abs")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Pack(dir); err == nil || !strings.Contains(err.Error(), "make it relative") {
		t.Errorf("an absolute link inside the folder: %v", err)
	}
	dir = tree(t, map[string]string{"f": "x"}, nil)
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Pack(dir); err == nil || !strings.Contains(err.Error(), "pipe is a named pipe") {
		t.Errorf("a named pipe: %v", err)
	}
	if _, _, err := Pack(filepath.Join(dir, "f")); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("a file: %v", err)
	}
	if _, _, err := Pack(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing folder: %v", err)
	}
}

type entry struct {
	hdr  tar.Header
	body string
}

func archive(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func file(name, body string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeReg}, body}
}

func link(name, target string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}, ""}
}

func TestUnpackRefuses(t *testing.T) {
	for _, c := range []struct {
		name    string
		archive func(t *testing.T) []byte
		want    string
	}{
		{"dot-dot", func(t *testing.T) []byte { return archive(t, file("../evil", "x")) }, `entry "../evil" leads outside`},
		{"absolute", func(t *testing.T) []byte { return archive(t, file("/tmp/evil", "x")) }, `entry "/tmp/evil" leads outside`},
		{"dot-dot inside", func(t *testing.T) []byte { return archive(t, file("a/../../evil", "x")) }, "leads outside"},
		{"backslash", func(t *testing.T) []byte { return archive(t, file(`a\..\..\evil`, "x")) }, "is not allowed"},
		{"link out", func(t *testing.T) []byte { return archive(t, link("l", "../../etc")) }, `link l points to "../../etc", outside`},
		{"absolute link", func(t *testing.T) []byte { return archive(t, link("l", "/etc")) }, `link l points to "/etc", outside`},
		{"chain of links out", func(t *testing.T) []byte { return archive(t, link("x", "."), link("y", "x/..")) },
			`link y points to "x/..", outside the folder`},
		{"write through a link", func(t *testing.T) []byte {
			return archive(t, entry{tar.Header{Name: "sub/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
				link("l", "sub"), file("l/f", "x"))
		}, "l is both a link and the folder of other entries"},
		{"file over a link out", func(t *testing.T) []byte {
			return archive(t, link("x", "."), link("y", "x/.."), file("y/evil", "x"))
		}, "y is both a link and the folder of other entries"},
		{"hard link", func(t *testing.T) []byte {
			return archive(t, file("a", "x"), entry{tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}, ""})
		}, "entry type"},
		{"device", func(t *testing.T) []byte {
			return archive(t, entry{tar.Header{Name: "dev", Typeflag: tar.TypeChar}, ""})
		}, "entry type"},
		{"twice", func(t *testing.T) []byte { return archive(t, file("a", "x"), file("a", "y")) }, "a appears twice"},
		{"not gzip", func(*testing.T) []byte { return []byte("not an archive") }, "not a dependencies archive"},
		{"truncated", func(t *testing.T) []byte {
			a := archive(t, file("a", strings.Repeat("x", 10000)))
			return a[:len(a)/2]
		}, "unpack"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			dst := filepath.Join(base, "dst")
			err := Unpack(c.archive(t), dst)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Unpack: %v, want %q", err, c.want)
			}
			// Nothing was written beside dst.
			if entries, _ := os.ReadDir(base); len(entries) > 1 {
				t.Errorf("unpacking wrote outside its folder: %v", entries)
			}
		})
	}
}

func TestUnpackLimits(t *testing.T) {
	ar := archive(t, file("a", strings.Repeat("x", 600)), file("b", strings.Repeat("y", 600)))
	if err := UnpackLimits(ar, t.TempDir(), Limits{MaxBytes: 1000, MaxEntries: 10}); err == nil ||
		!strings.Contains(err.Error(), "b: the archive unpacks to more than 1000 bytes") {
		t.Errorf("size limit: %v", err)
	}
	if err := UnpackLimits(ar, t.TempDir(), Limits{MaxBytes: 2000, MaxEntries: 1}); err == nil ||
		!strings.Contains(err.Error(), "more than 1 entries") {
		t.Errorf("entry limit: %v", err)
	}
	if err := UnpackLimits(ar, t.TempDir(), Limits{MaxBytes: 1200, MaxEntries: 2}); err != nil {
		t.Errorf("at the limits: %v", err)
	}
}
