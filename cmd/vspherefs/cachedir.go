package main

// The one owner of the --cache-dir layout:
//
//	<cache-dir>/locks/<id>            one flock per running mount, held while it lives
//	<cache-dir>/spool-<id>/           that mount's spool (a cache: removed when it dies)
//	<cache-dir>/staging/mount-<id>/   its files open for writing, library and guest alike
//	<cache-dir>/recovery/             bytes of failed commits, and staged files of dead mounts
//	<cache-dir>/times/                the times writers set on library files (fs/libtimes.go)
//	<cache-dir>/sessions/mount-<id>/  its open update sessions (backend/library/libsessions.go);
//	                                  a dead mount's records are moved into the next mount's
//
// A mount is alive while its lock file is flocked. Everything a mount made
// is named with its id, so a later mount can tell a dead mount's folders
// (nobody holds the lock) from a running one's and leave the latter alone.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vspherefs/vspherefs/fs"
)

// cacheDir is one mount's share of a --cache-dir.
type cacheDir struct {
	Root     string
	ID       string
	Spool    string // spool-<id>
	Staging  string // staging/mount-<id>
	Recovery string // recovery
	Times    string // times
	Sessions string // sessions/mount-<id>: records of open update sessions

	lock *os.File // flocked while the mount runs; kept here so that the GC never closes it
}

// openCacheDir checks root (ours, not writable by others, no symlinks where
// we keep things), removes what dead mounts left (spools; staged files go
// to recovery/), and makes this mount's folders under a lock of its own.
func openCacheDir(root string, log *slog.Logger) (*cacheDir, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	if err := checkPrivate(root, false); err != nil {
		return nil, err
	}
	for _, sub := range []string{"locks", "staging", "recovery", "sessions"} {
		if err := privateDir(filepath.Join(root, sub)); err != nil {
			return nil, err
		}
	}
	// One mount at a time cleans up and registers: a mount that starts
	// meanwhile sees ours as locked (alive), and never a half-made one.
	gc, err := os.OpenFile(filepath.Join(root, "locks", ".gc"), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	defer gc.Close()
	if err := syscall.Flock(int(gc.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	d := &cacheDir{Root: root, Recovery: filepath.Join(root, "recovery"), Times: filepath.Join(root, "times")}
	d.sweep(log)
	for range 100 {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		lock, err := os.OpenFile(filepath.Join(root, "locks", id), os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close()
			return nil, err
		}
		d.ID, d.lock = id, lock
		break
	}
	if d.lock == nil {
		return nil, errors.New("no free mount id")
	}
	d.Spool = filepath.Join(root, "spool-"+d.ID)
	d.Staging = filepath.Join(root, "staging", "mount-"+d.ID)
	d.Sessions = filepath.Join(root, "sessions", "mount-"+d.ID)
	for _, p := range []string{d.Spool, d.Staging, d.Sessions} {
		if err := os.Mkdir(p, 0o700); err != nil {
			d.Close()
			return nil, err
		}
	}
	d.inheritSessions(log) // still under locks/.gc: no other mount takes them too
	return d, nil
}

// inheritSessions moves the session records of mounts that no longer run
// into this mount's own folder, whose library writer ends those sessions
// (TrackSessions). The caller holds locks/.gc.
func (d *cacheDir) inheritSessions(log *slog.Logger) {
	root := filepath.Join(d.Root, "sessions")
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		id, ok := strings.CutPrefix(e.Name(), "mount-")
		if !ok || id == d.ID || !e.IsDir() || d.alive(id) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		records, _ := os.ReadDir(dir)
		for _, r := range records {
			if r.Type().IsRegular() {
				if err := os.Rename(filepath.Join(dir, r.Name()), filepath.Join(d.Sessions, r.Name())); err != nil {
					log.Warn("could not take over an update session record", "record", filepath.Join(dir, r.Name()), "err", err)
				}
			}
		}
		os.Remove(dir) // only if empty
	}
}

// Close removes this mount's spool and (empty) staging folder and releases
// its lock. Staged files still there (none after a clean unmount) are left
// for the next mount to move to recovery/.
func (d *cacheDir) Close() {
	if d.lock == nil {
		return
	}
	os.RemoveAll(d.Spool)
	os.Remove(d.Staging)  // only if empty: what is left goes to recovery/ at the next mount
	os.Remove(d.Sessions) // only if empty: sessions still open are the next mount's to end
	os.Remove(filepath.Join(d.Root, "locks", d.ID))
	d.lock.Close()
	d.lock = nil
}

// sweep handles the folders of mounts that are no longer running. The
// caller holds locks/.gc.
func (d *cacheDir) sweep(log *slog.Logger) {
	ids := map[string]bool{}
	entries, _ := os.ReadDir(d.Root)
	for _, e := range entries {
		if id, ok := strings.CutPrefix(e.Name(), "spool-"); ok {
			ids[id] = true
		}
	}
	staged, _ := os.ReadDir(filepath.Join(d.Root, "staging"))
	for _, e := range staged {
		// mount-<id>; libraries-<id> is where earlier versions staged library writes.
		_, id, ok := strings.Cut(e.Name(), "-")
		if ok && (strings.HasPrefix(e.Name(), "mount-") || strings.HasPrefix(e.Name(), "libraries-")) {
			ids[id] = true
		}
	}
	locks, _ := os.ReadDir(filepath.Join(d.Root, "locks"))
	for _, e := range locks {
		if !strings.HasPrefix(e.Name(), ".") {
			ids[e.Name()] = true
		}
	}
	for id := range ids {
		if d.alive(id) {
			continue
		}
		os.RemoveAll(filepath.Join(d.Root, "spool-"+id)) // a cache; RemoveAll follows no symlink
		kept := d.rescue(filepath.Join(d.Root, "staging", "mount-"+id), log)
		kept = append(kept, d.rescue(filepath.Join(d.Root, "staging", "libraries-"+id), log)...)
		if len(kept) > 0 {
			log.Warn("staged files of an earlier mount that did not finish were not committed; kept", "files", strings.Join(kept, " "))
		}
		os.Remove(filepath.Join(d.Root, "locks", id))
	}
}

// alive says whether a running mount holds id: its lock file is flocked
// (or, for folders of earlier versions, the folder itself is).
func (d *cacheDir) alive(id string) bool {
	paths := []string{
		filepath.Join(d.Root, "locks", id),
		filepath.Join(d.Root, "spool-"+id),
		filepath.Join(d.Root, "staging", "mount-"+id),
		filepath.Join(d.Root, "staging", "libraries-"+id),
		filepath.Join(d.Root, "sessions", "mount-"+id), // earlier versions locked it
	}
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		f.Close() // releases what we just took
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return true
		}
	}
	return false
}

// rescue moves the files of a dead mount's staging folder into recovery/,
// each to its origin where the staging left one, and removes the folder; it
// returns the new paths.
func (d *cacheDir) rescue(dir string, log *slog.Logger) []string {
	return fs.RescueStaged(dir, d.Recovery, log)
}

// privateDir makes dir (mode 0700) if it is missing and checks it as checkPrivate does,
// refusing a symlink.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return checkPrivate(dir, true)
}

// checkPrivate refuses a folder that is not ours or that other users can
// write (they could plant files or symlinks in it), and, with noSymlink, a
// symlink in its place.
func checkPrivate(dir string, noSymlink bool) error {
	stat := os.Stat
	if noSymlink {
		stat = os.Lstat
	}
	fi, err := stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink; vspherefs follows none in its cache dir (remove it)", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to this user (%d); use a cache dir of your own", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by other users (mode %04o); chmod go-w it or use another --cache-dir", dir, fi.Mode().Perm())
	}
	return nil
}
