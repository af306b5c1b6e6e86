// Package deps packs a job's dependencies folder (exec.dependencies) into an archive that travels
// to the workers, and unpacks it there into the job's working directory.
//
// The archive is a gzip-compressed tar, deterministic: the same folder gives the same bytes, so
// its digest (hex SHA-256 of the archive) names its content — a worker that has unpacked a
// digest once need not fetch it again. Entries are sorted by path; times, owners and user/group
// names are zeroed; permission bits are kept, so scripts stay executable. Symbolic links are
// kept as links when their target is relative and stays inside the folder, and refused
// otherwise. Unpack refuses anything that could write outside its destination (absolute names,
// "..", links leading out, entries through links) and bounds the unpacked size.
//
// Standard library only; no goroutines.
package deps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Limits bound what Unpack accepts.
type Limits struct {
	MaxBytes   int64 // total size of the unpacked files
	MaxEntries int   // files, folders and links
}

// DefaultLimits are Unpack's limits.
var DefaultLimits = Limits{MaxBytes: 1 << 30, MaxEntries: 100_000}

// epoch is the modification time of every entry.
var epoch = time.Unix(0, 0)

// Digest returns the hex SHA-256 of an archive.
func Digest(archive []byte) string {
	sum := sha256.Sum256(archive)
	return hex.EncodeToString(sum[:])
}

// Pack archives the content of dir (not dir itself: entries are relative to it) and returns the
// archive and its digest.
func Pack(dir string) ([]byte, string, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", fmt.Errorf("dependencies %s: %w", dir, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, "", fmt.Errorf("dependencies %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, "", fmt.Errorf("dependencies %s: not a folder", dir)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, "", fmt.Errorf("dependencies %s: %w", dir, err)
	}
	type entry struct {
		rel  string // slash-separated, relative to root
		full string
		info fs.FileInfo
	}
	var entries []entry
	err = filepath.WalkDir(root, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if full == root {
			return nil
		}
		rel, err := filepath.Rel(root, full)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		entries = append(entries, entry{filepath.ToSlash(rel), full, info})
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("dependencies %s: %w", dir, err)
	}
	// WalkDir visits in lexical order per folder; sort the whole list by path so the order does
	// not depend on the walk.
	sort.Slice(entries, func(i, j int) bool { return entries[i].rel < entries[j].rel })

	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, "", err
	}
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.rel,
			Mode:    int64(e.info.Mode().Perm()),
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		var content *os.File
		switch m := e.info.Mode(); {
		case m.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case m.IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = e.info.Size()
			if content, err = os.Open(e.full); err != nil {
				return nil, "", fmt.Errorf("dependencies %s: %w", dir, err)
			}
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(e.full)
			if err != nil {
				return nil, "", fmt.Errorf("dependencies %s: %w", dir, err)
			}
			if err := checkPackLink(realRoot, e.full, e.rel, target); err != nil {
				return nil, "", fmt.Errorf("dependencies %s: %w", dir, err)
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = target
			hdr.Mode = 0o777
		default:
			return nil, "", fmt.Errorf("dependencies %s: %s is a %s; only files, folders and links can be shipped",
				dir, e.rel, kind(m))
		}
		err := tw.WriteHeader(hdr)
		if err == nil && content != nil {
			var n int64
			n, err = io.Copy(tw, content)
			if err == nil && n != hdr.Size {
				err = fmt.Errorf("%s changed while it was packed", e.rel)
			}
		}
		if content != nil {
			content.Close()
		}
		if err != nil {
			return nil, "", fmt.Errorf("dependencies %s: %s: %w", dir, e.rel, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	data := buf.Bytes()
	return data, Digest(data), nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// checkPackLink accepts a link whose target is relative and, followed on disk, stays inside the
// folder (realRoot is the folder with its own links resolved).
func checkPackLink(realRoot, full, rel, target string) error {
	if filepath.IsAbs(target) {
		if within(realRoot, filepath.Clean(target)) {
			return fmt.Errorf("link %s points to the absolute path %s, which will not exist on the worker: make it relative", rel, target)
		}
		return fmt.Errorf("link %s points to %s, outside the folder", rel, target)
	}
	if !localTarget(rel, filepath.ToSlash(target)) {
		return fmt.Errorf("link %s points to %s, outside the folder", rel, target)
	}
	resolved, err := filepath.EvalSymlinks(full)
	if err != nil {
		return fmt.Errorf("link %s points to %s, which cannot be followed: %w", rel, target, err)
	}
	if !within(realRoot, resolved) {
		return fmt.Errorf("link %s points to %s, which leads outside the folder (%s)", rel, target, resolved)
	}
	return nil
}

// localTarget reports whether a relative link target, taken from the link's folder, names a
// path inside the root (lexically).
func localTarget(linkRel, target string) bool {
	return filepath.IsLocal(filepath.FromSlash(path.Join(path.Dir(linkRel), target)))
}

func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

// Unpack unpacks an archive made by Pack into dst, which is created if needed, with the
// DefaultLimits.
func Unpack(archive []byte, dst string) error { return UnpackLimits(archive, dst, DefaultLimits) }

// UnpackLimits is Unpack with explicit limits. Existing files of the same names are replaced;
// other files in dst are left alone. Permission bits are those of the archive (without setuid,
// setgid and sticky bits).
func UnpackLimits(archive []byte, dst string, lim Limits) error {
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return fmt.Errorf("unpack: not a dependencies archive: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer root.Close()
	tr := tar.NewReader(zr)
	type later struct {
		name, target string
		mode         fs.FileMode
	}
	var links, dirs []later
	var total int64
	seen := map[string]bool{}
	parents := map[string]bool{} // every folder above an entry
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("unpack: entry %d: %w", n+1, err)
		}
		if n >= lim.MaxEntries {
			return fmt.Errorf("unpack: more than %d entries", lim.MaxEntries)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		if seen[name] {
			return fmt.Errorf("unpack: %s appears twice", name)
		}
		seen[name] = true
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			parents[d] = true
		}
		if err := realParents(root, name); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return fmt.Errorf("unpack: %s: %w", name, err)
			}
			dirs = append(dirs, later{name: name, mode: mode})
		case tar.TypeReg:
			if hdr.Size < 0 || hdr.Size > lim.MaxBytes-total {
				return fmt.Errorf("unpack: %s: the archive unpacks to more than %d bytes", name, lim.MaxBytes)
			}
			total += hdr.Size
			if err := writeFile(root, name, tr, hdr.Size, mode); err != nil {
				return fmt.Errorf("unpack: %s: %w", name, err)
			}
		case tar.TypeSymlink:
			target := hdr.Linkname
			if target == "" || path.IsAbs(target) || strings.ContainsRune(target, 0) || !localTarget(name, target) {
				return fmt.Errorf("unpack: link %s points to %q, outside the folder", name, target)
			}
			links = append(links, later{name: name, target: target})
		default:
			return fmt.Errorf("unpack: %s: entry type %q is not allowed (only files, folders and links)", name, hdr.Typeflag)
		}
	}
	// Links last, so that no entry is written through one; then check where each leads.
	for _, l := range links {
		if parents[l.name] {
			return fmt.Errorf("unpack: %s is both a link and the folder of other entries", l.name)
		}
	}
	for _, l := range links {
		if err := root.RemoveAll(l.name); err != nil {
			return fmt.Errorf("unpack: %s: %w", l.name, err)
		}
		if err := root.Symlink(filepath.FromSlash(l.target), l.name); err != nil {
			return fmt.Errorf("unpack: %s: %w", l.name, err)
		}
	}
	realDst, err := filepath.EvalSymlinks(dst)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	for _, l := range links {
		resolved, err := filepath.EvalSymlinks(filepath.Join(dst, l.name))
		if err != nil || !within(realDst, resolved) {
			root.Remove(l.name)
			if err == nil {
				err = fmt.Errorf("leads to %s", resolved)
			}
			return fmt.Errorf("unpack: link %s points to %q, outside the folder: %v", l.name, l.target, err)
		}
	}
	// Folder modes last, deepest first, so that a read-only folder does not block its content.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := root.Chmod(dirs[i].name, dirs[i].mode); err != nil {
			return fmt.Errorf("unpack: %s: %w", dirs[i].name, err)
		}
	}
	return nil
}

// entryName checks and cleans an entry's name: relative, without "..", in slash form.
func entryName(raw string) (string, error) {
	name := strings.TrimSuffix(raw, "/")
	if name == "" || strings.ContainsRune(name, 0) || strings.ContainsRune(name, '\\') {
		return "", fmt.Errorf("entry name %q is not allowed", raw)
	}
	if path.IsAbs(name) || !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", fmt.Errorf("entry %q leads outside the folder", raw)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q leads outside the folder", raw)
		}
	}
	return path.Clean(name), nil
}

// realParents makes sure every folder above name inside root is a real folder (or missing), never
// a link: nothing is written through a link.
func realParents(root *os.Root, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s: %s is not a folder", name, p)
		}
	}
	return nil
}

func writeFile(root *os.Root, name string, r io.Reader, size int64, mode fs.FileMode) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	if fi, err := root.Lstat(name); err == nil && !fi.Mode().IsRegular() {
		if err := root.RemoveAll(name); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("archive truncated: %d of %d bytes", n, size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return root.Chmod(name, mode)
}
