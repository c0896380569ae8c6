package fs

// Per-file times of library files. The library API keeps one modification
// time per item and none per file, so the mount keeps them itself, in
// <cache-dir>/times/<item id>.json, keyed by file name, the file's version
// (the server's per-file version) and its size: a time is believed only
// while the file is the version it was recorded for. A file first seen gets
// the item's modification time at that moment; a commit records the time of
// the file's last write, or the time the writer set (touch -d, cp -p,
// rsync -a); utimens of a closed file records the time it gives. So a commit
// of one file leaves the times of the item's other files as they were, and
// a second rsync -a finds nothing to send.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vspherefs/vspherefs/remote"
)

type timeRec struct {
	Version string    `json:"v"`
	Size    int64     `json:"size"`
	Mtime   time.Time `json:"mtime"`
}

type fileTimes struct {
	dir   string // "" keeps them in memory only
	mu    sync.Mutex
	items map[string]map[string]timeRec // item id -> file name -> record
	dirty map[string]bool               // items with first-sight records not saved yet
}

func newFileTimes(dir string) *fileTimes {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			dir = ""
		}
	}
	return &fileTimes{dir: dir, items: map[string]map[string]timeRec{}, dirty: map[string]bool{}}
}

// itemLocked returns an item's records, loading them; call with t.mu held
// (local disk only).
func (t *fileTimes) itemLocked(itemID string) map[string]timeRec {
	m := t.items[itemID]
	if m != nil {
		return m
	}
	m = map[string]timeRec{}
	if t.dir != "" {
		if b, err := os.ReadFile(t.file(itemID)); err == nil {
			_ = json.Unmarshal(b, &m)
		}
	}
	t.items[itemID] = m
	return m
}

func (t *fileTimes) file(itemID string) string {
	return filepath.Join(t.dir, EncodeName(itemID)+".json")
}

// saveLocked writes an item's records (a temporary file renamed over).
func (t *fileTimes) saveLocked(itemID string) {
	if t.dir == "" {
		return
	}
	delete(t.dirty, itemID)
	b, err := json.Marshal(t.items[itemID])
	if err != nil {
		return
	}
	tmp := t.file(itemID) + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, t.file(itemID))
	}
}

// fileMtime is the time a library file shows, the same on every path
// (lookup, stat, an open handle, a staged copy's load): editors compare
// them, and vim -Es skips its save when they differ.
func (f *FS) fileMtime(it remote.Item, file remote.File) time.Time {
	return f.times().mtime(it.ID, file, it.Modified)
}

// mtime is the modification time of a server file: the recorded one if it
// is for this version and size, else first (recorded from now on; saved
// with the item's next change, or at unmount, so that listing a large item
// does not rewrite its record once per file).
func (t *fileTimes) mtime(itemID string, f remote.File, first time.Time) time.Time {
	if t == nil {
		return first
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.itemLocked(itemID)
	if r, ok := m[f.Name]; ok && r.Version == f.Version && r.Size == f.Size {
		return r.Mtime
	}
	m[f.Name] = timeRec{Version: f.Version, Size: f.Size, Mtime: first}
	t.dirty[itemID] = true
	return first
}

// flush saves the records not saved yet (at unmount).
func (t *fileTimes) flush() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.dirty {
		t.saveLocked(id)
	}
}

// set records the time of a server file's version.
func (t *fileTimes) set(itemID string, f remote.File, mtime time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.itemLocked(itemID)[f.Name] = timeRec{Version: f.Version, Size: f.Size, Mtime: mtime}
	t.saveLocked(itemID)
}

// drop forgets a file that left the item.
func (t *fileTimes) drop(itemID, name string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.itemLocked(itemID)
	if _, ok := m[name]; ok {
		delete(m, name)
		t.saveLocked(itemID)
	}
}
