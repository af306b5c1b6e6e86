// Package deps packs an executable job's dependencies folder for the trip to a worker, and
// unpacks it there: a deterministic tar.gz (the same folder always gives the same bytes, so its
// sha256 names it and an unchanged folder is shipped once), with file modes kept so scripts stay
// executable, and unpacking that refuses anything escaping its destination.
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

// Limits of an archive: a dependencies folder is code and small data, not a data set.
var (
	MaxArchiveFiles = 100_000
	MaxUnpackedSize = int64(2 << 30)
)

// Pack returns a deterministic tar.gz of dir's contents and its sha256 (hex). Entries are sorted,
// times and owners zeroed, modes kept. A symbolic link is kept when it points inside dir, and is
// an error otherwise (it would not exist on the worker).
func Pack(dir string) ([]byte, string, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", err
	}
	var names []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("pack %s: %w", dir, err)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	for _, p := range names {
		if err := addEntry(tw, root, p); err != nil {
			return nil, "", fmt.Errorf("pack %s: %w", dir, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := gz.Close(); err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:]), nil
}

func addEntry(tw *tar.Writer, root, p string) error {
	info, err := os.Lstat(p)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return err
	}
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return err
		}
		target := link
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		if r, err := filepath.Rel(root, target); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return fmt.Errorf("%s: symbolic link to %s points outside the folder", rel, link)
		}
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	hdr.Name = filepath.ToSlash(rel)
	if info.IsDir() {
		hdr.Name += "/"
	}
	hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	hdr.Format = tar.FormatPAX
	hdr.PAXRecords = nil
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

// Unpack writes an archive made by Pack into dst (created if needed). Names that are absolute or
// climb out of dst, links pointing out of it, and archives over the limits are errors.
func Unpack(archive []byte, dst string) error {
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer gz.Close()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	tr := tar.NewReader(gz)
	var files int
	var size int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		if files++; files > MaxArchiveFiles {
			return fmt.Errorf("unpack: more than %d entries", MaxArchiveFiles)
		}
		target, err := safeJoin(dst, hdr.Name)
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		if size += hdr.Size; size > MaxUnpackedSize {
			return fmt.Errorf("unpack: more than %d bytes", MaxUnpackedSize)
		}
		if err := writeEntry(tr, hdr, dst, target); err != nil {
			return fmt.Errorf("unpack %s: %w", hdr.Name, err)
		}
	}
}

// safeJoin joins an archive name to dst, refusing names that leave dst.
func safeJoin(dst, name string) (string, error) {
	clean := path.Clean("/" + name)
	if name == "" || path.IsAbs(name) || strings.Contains("/"+name+"/", "/../") {
		return "", fmt.Errorf("entry %q leaves the destination", name)
	}
	return filepath.Join(dst, filepath.FromSlash(clean)), nil
}

func writeEntry(tr *tar.Reader, hdr *tar.Header, dst, target string) error {
	mode := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		return os.MkdirAll(target, mode|0o700)
	case tar.TypeReg:
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, tr, hdr.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return os.Chmod(target, mode) // not narrowed by the umask: scripts stay executable
	case tar.TypeSymlink:
		link := hdr.Linkname
		resolved := link
		if !filepath.IsAbs(resolved) {
			resolved = filepath.Join(filepath.Dir(target), resolved)
		}
		if r, err := filepath.Rel(dst, resolved); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(link) {
			return fmt.Errorf("link to %s points outside the destination", link)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.Symlink(link, target)
	}
	return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
}
