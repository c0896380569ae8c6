package fs

// The commit queue of libraries/: one update session per item at a time;
// files that wait together go into the next session together.

import (
	"context"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vspherefs/vspherefs/remote"
)

// flush commits sf's unsaved bytes, unless its commit is held: a name like
// rsync's temporary files waits for its rename, and an .ovf (with the files
// it references) waits until every referenced file is staged or on the server.
// It says whether a session committed them.
func (w *Writes) flush(ctx context.Context, sf *staged) (bool, syscall.Errno) {
	w.mu.Lock()
	if sf.inBatch {
		// A session is sending these bytes for another handle: its outcome is ours.
		it := sf.it
		w.mu.Unlock()
		if errno := w.sessionWait(ctx, it); errno != 0 {
			return false, errno
		}
		w.mu.Lock()
	}
	if sf.streaming() {
		w.mu.Unlock()
		if anyoneKeepsWriter(w.fs.mnt.Load(), sf.streamIno()) {
			return false, 0 // a dup of its descriptor elsewhere (a forked shell): its last close ends the upload
		}
		return w.streamWait(ctx, sf)
	}
	if err := sf.brokenNow(); err != nil {
		w.mu.Unlock()
		w.keepFailed(sf, err) // once: later closes get EIO alone
		return false, syscall.EIO
	}
	if st := sf.it.stream; st != nil && st != sf && !sf.unlinked && !sf.localOnly && sf.isDirty() && callerKeepsWriter(ctx, w.fs.mnt.Load(), st.streamIno()) {
		// The closing process streams another file of this item, whose
		// session the item has until that file is closed: waiting for it
		// here would wait for ourselves. Committed right after it.
		sf.ready = true
		sf.it.heldForStream = true
		w.mu.Unlock()
		return false, 0
	}
	if sf.unlinked || sf.localOnly || !sf.isDirty() {
		failed := sf.failedNow()
		w.mu.Unlock()
		if failed {
			return false, syscall.EIO
		}
		return false, 0
	}
	sf.ready = true
	it := sf.it
	w.mu.Unlock()
	names, held := w.plan(ctx, it, sf)
	if held {
		return false, 0
	}
	errno := w.commitWait(ctx, it, names) // EINTR if interrupted: the commit goes on
	return errno == 0, errno
}

// streamWait ends sf's streamed upload (endStream) on its own and waits
// for it; EINTR as soon as the caller is dying, the upload going on to its
// end (or its deadline) by itself, waited for by unmount.
func (w *Writes) streamWait(ctx context.Context, sf *staged) (bool, syscall.Errno) {
	done := make(chan struct{})
	var committed bool
	var errno syscall.Errno
	end := w.start()
	go func() {
		defer end()
		committed, errno = w.endStream(sf)
		close(done)
	}()
	if !awaitOrDie(ctx, done) {
		w.log().Warn("close interrupted: the writer is gone; the streamed upload goes on and is logged when it ends", "path", sf.it.path+"/"+EncodeName(sf.name))
		return false, syscall.EINTR
	}
	return committed, errno
}

// plan decides what to commit now for sf: nil and true if sf is held;
// otherwise the ready files of its item that are not held.
func (w *Writes) plan(ctx context.Context, it *itemWrites, sf *staged) ([]string, bool) {
	var server map[string]bool
	for attempt := 0; ; attempt++ {
		w.mu.Lock()
		ready := map[string]*staged{}
		hasOVF := false
		for n, f := range it.files {
			if f.ready && !f.unlinked && !f.localOnly && !isHeldTemp(n) {
				ready[n] = f
				hasOVF = hasOVF || isOVF(n)
			}
		}
		if sf != nil && isHeldTemp(sf.name) {
			w.holdTimerLocked(sf)
			w.mu.Unlock()
			return nil, true
		}
		if hasOVF && server == nil && attempt == 0 {
			w.mu.Unlock()
			server = map[string]bool{}
			if _, files, err := w.fs.Catalog.Files(ctx, it.id); err == nil {
				for _, f := range files {
					server[f.Name] = true
				}
			}
			continue
		}
		held := map[string]bool{}
		for n, f := range ready {
			if !isOVF(n) {
				continue
			}
			refs := ovfRefs(f.path)
			missing := false
			for _, r := range refs {
				if _, ok := ready[r]; !ok && !server[r] {
					missing = true
				}
			}
			if missing {
				held[n] = true
				for _, r := range refs {
					if _, ok := ready[r]; ok {
						held[r] = true
					}
				}
			}
		}
		if sf != nil && held[sf.name] {
			w.mu.Unlock()
			return nil, true
		}
		var names []string
		for n := range ready {
			if !held[n] {
				names = append(names, n)
			}
		}
		w.mu.Unlock()
		return names, false
	}
}

// commitErrno commits and maps the outcome to what close() returns.
func (w *Writes) commitErrno(it *itemWrites, names, remove []string) syscall.Errno {
	if err := w.commit(it, names, remove); err != nil {
		return syscall.EIO
	}
	return 0
}

// commit puts files and removals in the item's next session and waits for
// it. Sessions of one item run one at a time; whoever gets to run a session
// takes everything queued by then.
func (w *Writes) commit(it *itemWrites, names, remove []string) error {
	defer w.start()()
	w.mu.Lock()
	b := it.next
	if b == nil {
		b = &batch{files: map[string]bool{}, remove: map[string]bool{}, done: make(chan struct{})}
		it.next = b
	}
	for _, n := range names {
		b.files[n] = true
		delete(b.remove, n)
	}
	for _, n := range remove {
		b.remove[n] = true
		delete(b.files, n)
	}
	w.mu.Unlock()

	it.session.Lock()
	defer it.session.Unlock()
	select {
	case <-b.done: // ran by another caller while this one waited
		return b.err
	default:
	}
	w.mu.Lock()
	if it.next == b {
		it.next = nil
	}
	var files []*staged
	for n := range b.files {
		if sf := it.files[n]; sf != nil && !sf.unlinked && !sf.streaming() && sf.brokenNow() == nil && !sf.sealedNow() {
			sf.ready = false
			sf.inBatch = true
			w.stopTimerLocked(sf)
			files = append(files, sf)
		}
	}
	var removes []string
	for n := range b.remove {
		removes = append(removes, n)
	}
	// Files renamed away leave with this session; a file added under the
	// same name replaces them instead.
	var pending []string
	for n := range it.pending {
		if !b.files[n] && !b.remove[n] && it.files[n] == nil {
			removes = append(removes, n)
			pending = append(pending, n)
		}
	}
	if it.pendTimer != nil {
		it.pendTimer.Stop()
		it.pendTimer = nil
	}
	w.mu.Unlock()
	if len(files) == 0 && len(removes) == 0 {
		close(b.done)
		return nil
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	sort.Strings(removes)
	b.err = w.run(it, files, removes)
	w.mu.Lock()
	for _, n := range pending {
		if b.err == nil {
			delete(it.pending, n)
		}
	}
	if b.err != nil {
		w.pendLaterLocked(it)
	}
	w.mu.Unlock()
	if b.err == nil {
		for _, n := range pending {
			w.times.drop(it.id, n)
		}
	}
	close(b.done)
	return b.err
}

// run is one update session: it holds the files' bytes still while the
// session reads them.
func (w *Writes) run(it *itemWrites, files []*staged, removes []string) error {
	var list []remote.Staged
	w.mu.Lock()
	names := make([]string, len(files))
	for i, sf := range files {
		names[i] = sf.name
	}
	itemPath := it.path
	w.mu.Unlock()
	mtimes := make([]time.Time, len(files))
	for i, sf := range files {
		sf.io.Lock()
		sf.mu.Lock()
		mtimes[i] = sf.mtime
		s := remote.Staged{Name: names[i], Path: sf.path, Size: sf.size}
		if sf.hash != nil && sf.hashed == sf.size {
			s.SHA256 = hex.EncodeToString(sf.hash.Sum(nil))
		}
		sf.dirty = false
		sf.mu.Unlock()
		list = append(list, s)
	}
	start := time.Now()
	err := w.lw.Commit(withOrigin(w.ctx, itemPath), it.id, list, removes)
	if err == nil {
		var total int64
		for _, s := range list {
			total += s.Size
		}
		w.log().Debug("committed", "item", itemPath, "files", strings.Join(names, ","), "removed", strings.Join(removes, ","),
			"bytes", total, "took", time.Since(start).Round(time.Millisecond))
		if w.fs != nil {
			w.fs.Catalog.Invalidate(it.libID, it.id)
			w.recordTimes(it.id, names, mtimes)
		}
	} else {
		var be *remote.Error
		call, fault := "commit", err.Error()
		if errors.As(err, &be) {
			call, fault = be.Call, be.Fault
		}
		if context.Cause(w.ctx) == errUnmountGaveUp && !errors.Is(err, remote.ErrStalled) {
			fault = errUnmountGaveUp.Error() + ": " + fault // why it was cancelled
		}
		for i, sf := range files {
			rec, rerr := w.recover(itemPath, names[i], sf, "commit failed", call, fault)
			if rerr != nil {
				rec = "not kept: " + rerr.Error()
			} else {
				w.mu.Lock()
				w.recovered = append(w.recovered, rec)
				w.mu.Unlock()
			}
			w.log().Error(syscall.EIO.Error(), "path", itemPath+"/"+EncodeName(names[i]), "call", call, "fault", fault, "recovery", rec)
			sf.mu.Lock()
			sf.dirty, sf.failed = true, true
			sf.mu.Unlock()
		}
		for _, n := range removes {
			w.log().Error(syscall.EIO.Error(), "path", itemPath+"/"+EncodeName(n), "call", call, "fault", fault)
		}
	}
	for _, sf := range files {
		sf.io.Unlock()
	}
	w.mu.Lock()
	for _, sf := range files {
		sf.inBatch = false
		if err == nil {
			sf.onServer = true
		}
		w.settleLocked(sf)
	}
	w.mu.Unlock()
	return err
}

// recordTimes keeps the modification times of committed files for the
// versions the server gave them (the API has no per-file time).
func (w *Writes) recordTimes(itemID string, names []string, mtimes []time.Time) {
	if len(names) == 0 {
		return
	}
	_, files, err := w.fs.Catalog.Files(w.ctx, itemID)
	if err != nil {
		return // the times are those of first sight
	}
	for i, n := range names {
		for _, f := range files {
			if f.Name == n {
				w.times.set(itemID, f, mtimes[i])
			}
		}
	}
}
