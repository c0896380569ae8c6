package fs

// Removes and renames of library files. The API has no rename: a rename is
// one update session that adds the file under its new name and removes the
// old one, so the item is never without it. A file the server does not have
// yet (open, or closed and waiting under a temporary name) just takes the
// new name and is committed once, under it.

import (
	"context"
	"syscall"
	"time"
)

// remove removes name from the item: the staged copy goes, and a file the
// server has is removed through an update session.
func (w *Writes) remove(ctx context.Context, it *itemWrites, name string, onServer bool) syscall.Errno {
	w.mu.Lock()
	if it.pending[name] && it.files[name] == nil {
		w.mu.Unlock()
		return syscall.ENOENT // renamed away: no longer here
	}
	sf := w.unlinkLocked(it, name)
	w.mu.Unlock()
	if !onServer {
		if sf == nil {
			return syscall.ENOENT
		}
		return 0
	}
	errno := w.commitErrno(it, nil, []string{name})
	if errno == 0 {
		w.times.drop(it.id, name)
	}
	return errno
}

// rename renames a file within its item. fromServer loads the server's
// bytes of from (nil if the server has no such file); toOnServer says the
// server has a file named to.
func (w *Writes) rename(ctx context.Context, it *itemWrites, from, to string, noReplace, toOnServer bool, fromServer *loader) syscall.Errno {
	if sf := w.find(it.id, from); sf != nil && sf.streaming() {
		// Its upload runs under the old name, and the API has no rename.
		sf.mu.Lock()
		gone := sf.up != nil && !sf.up.complete()
		sf.mu.Unlock()
		if gone {
			return syscall.EBUSY
		}
		w.stopStream(sf) // staged whole from now on
	}
	w.mu.Lock()
	sf := it.files[from]
	for sf != nil && sf.inBatch {
		// A session is sending it: rename what it leaves.
		w.mu.Unlock()
		it.session.Lock()
		it.session.Unlock()
		w.mu.Lock()
		sf = it.files[from]
	}
	t := it.files[to]
	if noReplace && ((t != nil && !t.unlinked) || (toOnServer && !it.pending[to])) {
		w.mu.Unlock()
		return syscall.EEXIST
	}
	if sf == nil {
		w.mu.Unlock()
		if fromServer == nil || w.isPending(it.id, from) {
			return syscall.ENOENT
		}
		return w.renameCommitted(ctx, it, from, to, toOnServer, fromServer)
	}
	fromOnServer := sf.onServer
	if t != nil && t != sf {
		toOnServer = toOnServer || t.onServer
		w.unlinkLocked(it, to)
	}
	if it.pending[to] {
		toOnServer = true // still on the server, until this file replaces it
		delete(it.pending, to)
	}
	delete(it.files, from)
	sf.name, sf.onServer = to, toOnServer
	wasLocal := sf.localOnly
	sf.localOnly = isLocalOnly(to)
	if fromOnServer {
		it.pending[from] = true // removed with the commit of the new name
		sf.mu.Lock()
		sf.dirty, sf.failed = true, false
		sf.mu.Unlock()
	}
	it.files[to] = sf
	sf.writeOrigin(it.path, to)
	w.stopTimerLocked(sf)
	if sf.localOnly {
		sf.ready = false
		w.pendLaterLocked(it)
		w.mu.Unlock()
		return 0
	}
	if wasLocal && sf.writers == 0 {
		sf.ready = true // closed scratch that becomes a real file
		sf.mu.Lock()
		sf.dirty = true
		sf.mu.Unlock()
	}
	ready := sf.ready
	w.mu.Unlock()
	if !ready {
		return 0 // still open: its close commits it under the new name
	}
	names, held := w.plan(ctx, it, sf)
	if held {
		return 0
	}
	return w.commitErrno(it, names, nil)
}

// renameCommitted renames a file only the server has: its bytes are
// staged under the new name (one download, from the block cache if they
// are there). To a real name, one session then adds it and removes the old
// name. To an editor's backup name (vim renames f to f~ before writing f
// anew), the copy stays here and the server's file is removed only with the
// item's next session (or after HoldTimeout), so that the item is never
// without it while the editor writes it again.
func (w *Writes) renameCommitted(ctx context.Context, it *itemWrites, from, to string, toOnServer bool, load *loader) syscall.Errno {
	w.mu.Lock()
	w.unlinkLocked(it, to)
	if it.pending[to] {
		toOnServer = true
		delete(it.pending, to)
	}
	w.mu.Unlock()
	sf, err := w.open(ctx, it, to, true, false, toOnServer, load)
	if err != nil {
		return toErrno(w.log(), it.path+"/"+EncodeName(from), err)
	}
	sf.mu.Lock()
	sf.dirty = true
	sf.mu.Unlock()
	w.mu.Lock()
	it.pending[from] = true
	if sf.localOnly {
		w.pendLaterLocked(it)
		w.mu.Unlock()
		w.release(sf, true)
		return 0
	}
	sf.ready = true
	w.mu.Unlock()
	w.release(sf, true)
	errno := w.commitErrno(it, []string{to}, nil)
	if errno != 0 {
		// The server still has from: undo the rename here (the failed
		// session's bytes were kept in recovery/ all the same).
		w.mu.Lock()
		delete(it.pending, from)
		if cur := it.files[to]; cur == sf {
			w.unlinkLocked(it, to)
		}
		w.mu.Unlock()
	}
	return errno
}

// pendLaterLocked removes the item's pending files in a session of their
// own if no other session of the item comes within HoldTimeout; call with
// w.mu held.
func (w *Writes) pendLaterLocked(it *itemWrites) {
	if len(it.pending) == 0 || w.closing || w.HoldTimeout <= 0 {
		return
	}
	if it.pendTimer != nil {
		it.pendTimer.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(w.HoldTimeout, func() {
		w.mu.Lock()
		if it.pendTimer != t || len(it.pending) == 0 || w.closing {
			w.mu.Unlock()
			return
		}
		it.pendTimer = nil
		w.mu.Unlock()
		_ = w.commitErrno(it, nil, nil)
	})
	it.pendTimer = t
}
