package deps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "lib", "data"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "lib", "data", "coeffs.txt"), []byte("1 2 3\n"), 0o644))
	must(os.Symlink("lib/data/coeffs.txt", filepath.Join(dir, "coeffs")))
	return dir
}

func TestPackIsDeterministicAndUnpackKeepsModes(t *testing.T) {
	dir := writeTree(t)
	a1, d1, err := Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	a2, d2, err := Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 || !bytes.Equal(a1, a2) {
		t.Fatal("packing the same folder twice gave different archives")
	}
	dst := t.TempDir()
	if err := Unpack(a1, dst); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dst, "run.sh"))
	if err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Fatalf("run.sh lost its executable bit: %v %v", st.Mode(), err)
	}
	b, err := os.ReadFile(filepath.Join(dst, "coeffs"))
	if err != nil || string(b) != "1 2 3\n" {
		t.Fatalf("link inside the folder: %q %v", b, err)
	}
}

func TestPackRefusesLinksOutOfTheFolder(t *testing.T) {
	dir := writeTree(t)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Pack(dir); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("err %v", err)
	}
}

func archiveWith(t *testing.T, hdr *tar.Header, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	hdr.Size = int64(len(body))
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for _, hdr := range []*tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "a/../../evil", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../../etc"},
		{Name: "abs", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
	} {
		dst := t.TempDir()
		if err := Unpack(archiveWith(t, hdr, ""), dst); err == nil {
			t.Errorf("%s (%s) unpacked", hdr.Name, hdr.Linkname)
		}
	}
	if err := Unpack([]byte("not gzip"), t.TempDir()); err == nil {
		t.Error("garbage unpacked")
	}
}
