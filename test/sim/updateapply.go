package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vmware/govmomi/vapi/library"
)

// versionsDir holds, per item, the bytes that a commit replaced or removed,
// under the item's content version before that commit, so that a download
// session opened before it keeps reading what it opened (as vCenter's does).
const versionsDir = ".versions"

// nextVersion is vcsim's rule: versions are decimal counters from "1".
func nextVersion(v string) string {
	n, err := strconv.Atoi(v)
	if err != nil {
		return "1"
	}
	return strconv.Itoa(n + 1)
}

// apply commits a validated session to its item: received files move from
// staging into the item directory, replacing a file of the same name;
// removed files go; the item's file list, size and content_version follow.
// Call with u.mu held.
func (u *UpdateSessions) apply(s *updateSession) error {
	u.vc.Lock()
	defer u.vc.Unlock()
	it := u.vc.item(s.LibraryItemID)
	if it == nil {
		return fmt.Errorf("library item %s no longer exists", s.LibraryItemID)
	}
	libDir, err := u.s.libraryDir(it.Library)
	if err != nil {
		return err
	}
	dir := filepath.Join(libDir, it.Item.ID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	old := it.Item.ContentVersion
	files := it.Files()
	index := map[string]int{}
	for i, f := range files {
		index[f.Name] = i
	}
	keep := func(name string) error {
		if _, ok := index[name]; !ok {
			return nil
		}
		vdir := filepath.Join(dir, versionsDir, old)
		if err := os.MkdirAll(vdir, 0o750); err != nil {
			return err
		}
		err := os.Link(filepath.Join(dir, name), filepath.Join(vdir, name))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) {
			return nil // nothing to keep, or kept by an earlier try
		}
		return err
	}
	// Check every staged file first: the item changes all at once or not at all.
	for name, f := range s.files {
		if _, err := os.Stat(f.staged); err != nil {
			return fmt.Errorf("staged bytes of %s: %w", name, err)
		}
	}
	for name := range s.removed {
		if err := keep(name); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		delete(index, name)
	}
	for name, f := range s.files {
		if err := keep(name); err != nil {
			return err
		}
		if err := os.Rename(f.staged, filepath.Join(dir, name)); err != nil {
			return err
		}
		size := f.received.Load()
		entry := library.File{Cached: newTrue(), Name: name, Size: &size, Version: "1", Checksum: f.Checksum}
		if i, ok := index[name]; ok {
			entry.Version = nextVersion(files[i].Version)
			files[i] = entry
		} else {
			index[name] = len(files)
			files = append(files, entry)
		}
	}
	var kept []library.File
	var total int64
	for _, f := range files {
		if _, ok := index[f.Name]; ok {
			kept = append(kept, f)
			if f.Size != nil {
				total += *f.Size
			}
		}
	}
	it.SetFiles(kept)
	now := time.Now()
	it.Item.ContentVersion = nextVersion(old)
	it.Item.Size = total
	it.Item.LastModifiedTime = &now
	return nil
}

func newTrue() *bool { t := true; return &t }

// versionedPath is where the bytes of an item file are for a download
// session opened at content version v: the first copy kept at or after v,
// else the current file.
func versionedPath(itemDir, v, name string) string {
	n, err := strconv.Atoi(v)
	if err == nil {
		entries, _ := os.ReadDir(filepath.Join(itemDir, versionsDir))
		best := -1
		for _, e := range entries {
			k, err := strconv.Atoi(e.Name())
			if err != nil || k < n || (best >= 0 && k >= best) {
				continue
			}
			if _, err := os.Stat(filepath.Join(itemDir, versionsDir, e.Name(), name)); err == nil {
				best = k
			}
		}
		if best >= 0 {
			return filepath.Join(itemDir, versionsDir, strconv.Itoa(best), name)
		}
	}
	return filepath.Join(itemDir, name)
}
