package fs

// Streamed uploads. A library file written in order from byte 0 (cp, tar,
// dd, `>`), by one writer, is uploaded while it is written: once it has
// StreamAfter bytes, its update session is created and one PUT (chunked,
// the file added without size or checksum) takes the bytes as they come,
// while only the last streamWindow bytes stay on local disk (older ones
// are punched out of the staged file). The session completes at close, so
// the server changes at close, once, as for staged files. What falls back:
// a rewrite or a shrinking truncate while nothing has been dropped yet ends
// the upload (the session is failed) and the file is staged whole as
// usual; one behind the dropped part fails with EIO, and so do reads of
// it. fsync waits until the server has every byte written (they are
// committed at close). Files with held names, editor files and .ovf never
// stream; nor does a file whose item has a session running.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vspherefs/vspherefs/remote"
)

// DefaultStreamAfter is the size at which a file written in order starts
// streaming: smaller files are staged whole and sent checksum-first, which
// costs them nothing (they fit the window anyway).
const DefaultStreamAfter = 4 << 20

// streamWindow is how much of a streamed file stays on local disk behind
// what the PUT has taken; a writer more than this ahead of the PUT waits.
const streamWindow = 8 << 20

var errStreamStopped = errors.New("streamed upload stopped: the file is staged instead")

// upstream is a streamed upload in progress; its fields are under the
// staged file's mu.
type upstream struct {
	s       Stream
	ino     uint64 // the kernel's inode of the file (for callerKeepsWriter)
	sent    int64  // [0, sent) went to the PUT
	dropped int64  // [0, dropped) is no longer on local disk
	err     error  // the upload broke or was stopped
	closing bool   // send the rest, then stop
	done    chan struct{}
	// ending: one finishStream ends the upload; others (a close and the
	// unmount at once) wait for ended and take its outcome.
	ending bool
	ended  chan struct{}
	result syscall.Errno
	cond   *sync.Cond // on the staged file's mu
}

// write is a write through a handle: local, then the streamed upload is
// started or fed. A write more than streamWindow ahead of the PUT waits for
// it (bounded local disk), killably: an interrupted wait returns, its bytes
// stored.
func (w *Writes) write(ctx context.Context, sf *staged, data []byte, off int64, appendMode bool, ino uint64) (int, error) {
	n, err, start, stop := sf.writeLocal(data, off, appendMode, w.StreamAfter)
	if stop {
		w.stopStream(sf)
	}
	if err != nil {
		if err == sf.brokenNow() {
			w.keepFailed(sf, err) // the one log line of this failure, with the recovery
		}
		return n, err
	}
	if start {
		w.startStream(sf, ino)
	}
	sf.mu.Lock()
	up := sf.up
	if up != nil && up.err == nil && sf.size-up.sent > streamWindow {
		wake := context.AfterFunc(ctx, func() {
			sf.mu.Lock()
			up.cond.Broadcast()
			sf.mu.Unlock()
		})
		for up.err == nil && sf.size-up.sent > streamWindow && ctx.Err() == nil {
			up.cond.Wait()
		}
		wake()
	}
	var broke error
	if up != nil && up.err != nil && up.err != errStreamStopped {
		broke = up.err
		// Bytes already dropped cannot be sent again; a stall already took
		// the deadline, and is not tried again (as a staged PUT's is not):
		// either way the file cannot be committed any more.
		if (sf.dropped > 0 || errors.Is(broke, remote.ErrStalled)) && sf.broken == nil {
			sf.broken = broke
		}
	}
	fatal := sf.broken != nil
	sf.mu.Unlock()
	if broke != nil {
		// The PUT failed. With every byte still here (and not a stall),
		// the file is staged and committed at close as any other; else the
		// next writes and the close get EIO, and what is here goes to
		// recovery/ (keepFailed). This write's bytes are stored: kept.
		w.stopStream(sf)
		if fatal {
			// Every byte accepted is here now (this write's included, and
			// none after it): kept at once, logged once; the next writes
			// and the close return EIO without another line.
			w.keepFailed(sf, sf.brokenNow())
		} else {
			w.log().Debug("streamed upload failed; the file is staged instead", "path", sf.it.path+"/"+EncodeName(sf.name), "fault", broke.Error())
		}
	}
	return n, nil
}

// writeLocal stores data in the staged file; it says whether a streamed
// upload should start, or stop (a rewrite).
func (sf *staged) writeLocal(data []byte, off int64, appendMode bool, after int64) (n int, err error, start, stop bool) {
	sf.io.RLock()
	defer sf.io.RUnlock()
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.broken != nil {
		return 0, sf.broken, false, false
	}
	if sf.sealed {
		return 0, errSealed(sf.name), false, false
	}
	if appendMode {
		off = sf.size
	}
	if off < sf.size {
		sf.noStream = true
		if up := sf.up; up != nil {
			if off < sf.dropped || up.dropped > 0 {
				sf.broken = remote.Errorf("write", sf.name, remote.ErrIO, "a rewrite at byte %d of a file whose first %d bytes were uploaded while it was written and are no longer here", off, up.dropped)
				return 0, sf.broken, false, true
			}
			stop = true
		}
	}
	if off < sf.dropped {
		return 0, remote.Errorf("write", sf.name, remote.ErrIO, "a write at byte %d of a file whose first %d bytes were uploaded and are no longer here", off, sf.dropped), false, stop
	}
	n, err = sf.f.WriteAt(data, off)
	if n > 0 {
		sf.dirty, sf.failed = true, false
		sf.mtime = time.Now()
		if sf.hash != nil && off == sf.hashed && off >= sf.size {
			sf.hash.Write(data[:n])
			sf.hashed += int64(n)
		} else {
			sf.hash = nil // not sequential: the commit hashes the file
		}
		sf.size = max(sf.size, off+int64(n))
		if sf.up != nil {
			sf.up.cond.Broadcast()
		}
	}
	start = after > 0 && sf.up == nil && !sf.noStream && sf.dropped == 0 && sf.size >= after
	return n, err, start, stop
}

// startStream starts the streamed upload of sf, if it may stream and its
// item has no session running; else sf stays staged.
func (w *Writes) startStream(sf *staged, ino uint64) {
	w.mu.Lock()
	it, name := sf.it, sf.name
	origin := it.path + "/" + EncodeName(name)
	ok := !sf.localOnly && !isHeldTemp(name) && !isOVF(name) && sf.writers == 1 && sf.opens == 1 &&
		!sf.unlinked && !sf.inBatch && !sf.ready && !w.closing && it.stream == nil
	w.mu.Unlock()
	if !ok {
		sf.mu.Lock()
		sf.noStream = true
		sf.mu.Unlock()
		return
	}
	if !it.session.TryLock() {
		return // another session of the item: try again at a later write
	}
	s, err := w.lw.StartStream(withOrigin(w.ctx, origin), it.id, name)
	if err != nil {
		it.session.Unlock()
		sf.mu.Lock()
		sf.noStream = true
		sf.mu.Unlock()
		w.log().Debug("streamed upload not started; staged", "path", it.path+"/"+EncodeName(name), "fault", err.Error())
		return
	}
	sf.mu.Lock()
	if sf.noStream || sf.up != nil || sf.broken != nil {
		sf.mu.Unlock()
		s.Abort(w.ctx)
		it.session.Unlock()
		return
	}
	up := &upstream{s: s, ino: ino, done: make(chan struct{}), ended: make(chan struct{}), cond: sync.NewCond(&sf.mu)}
	sf.up = up
	// The stream hashes what it sends; a second SHA-256 of the same bytes
	// here would only serve a fallback to staging, whose commit hashes the
	// file itself when it has no running hash.
	sf.hash = nil
	sf.mu.Unlock()
	w.mu.Lock()
	it.stream = sf
	w.mu.Unlock()
	go w.send(sf, up)
}

// send feeds the PUT from the staged file and drops what it has sent,
// but the last streamWindow bytes.
func (w *Writes) send(sf *staged, up *upstream) {
	defer close(up.done)
	buf := make([]byte, 1<<20)
	for {
		sf.mu.Lock()
		for up.err == nil && !up.closing && up.sent >= sf.size {
			up.cond.Wait()
		}
		if up.err != nil || (up.closing && up.sent >= sf.size) {
			sf.mu.Unlock()
			return
		}
		from := up.sent
		k := int(min(sf.size-from, int64(len(buf))))
		sf.mu.Unlock()
		n, rerr := sf.f.ReadAt(buf[:k], from)
		if rerr == io.EOF && n < k { // a hole at the end (a truncate that extended): zeros
			clear(buf[n:k])
			n, rerr = k, nil
		}
		var werr error
		if n > 0 {
			_, werr = up.s.Write(buf[:n])
		}
		sf.mu.Lock()
		up.sent += int64(n)
		switch {
		case werr != nil && up.err == nil:
			up.err = werr
		case rerr != nil && up.err == nil:
			up.err = rerr
		}
		if keep := up.sent - streamWindow; keep-up.dropped >= streamWindow {
			// FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE: the size stays, the blocks go.
			if syscall.Fallocate(int(sf.f.Fd()), 0x3, up.dropped, keep-up.dropped) == nil {
				up.dropped = keep
				sf.dropped = keep
			}
		}
		up.cond.Broadcast()
		sf.mu.Unlock()
	}
}

// streaming says whether sf has a streamed upload running.
func (sf *staged) streaming() bool {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.up != nil
}

// stopStream ends a streamed upload without committing it (its session is
// failed): the file is staged from then on (whole, if nothing was dropped).
func (w *Writes) stopStream(sf *staged) {
	sf.mu.Lock()
	up := sf.up
	if up == nil {
		sf.mu.Unlock()
		return
	}
	if up.err == nil {
		up.err = errStreamStopped
	}
	up.cond.Broadcast()
	sf.mu.Unlock()
	up.s.Abort(w.ctx) // unblocks the sender if the PUT is not reading
	<-up.done
	sf.mu.Lock()
	sf.up, sf.noStream = nil, true
	sf.mu.Unlock()
	w.mu.Lock()
	if sf.it.stream == sf {
		sf.it.stream = nil
	}
	w.mu.Unlock()
	sf.it.session.Unlock()
	w.commitHeld(sf.it)
}

// syncStream is fsync of a streamed file: it returns once the server has
// every byte written so far (they are committed at close), or EINTR when
// interrupted.
func (w *Writes) syncStream(ctx context.Context, sf *staged) syscall.Errno {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if up := sf.up; up != nil {
		wake := context.AfterFunc(ctx, func() {
			sf.mu.Lock()
			up.cond.Broadcast()
			sf.mu.Unlock()
		})
		defer wake()
		for up.err == nil && up.sent < sf.size {
			if ctx.Err() != nil {
				return syscall.EINTR
			}
			up.cond.Wait()
		}
	}
	if (sf.up != nil && sf.up.err != nil) || sf.broken != nil {
		return syscall.EIO
	}
	return 0
}

// endStream is the last close of a streamed file, run by itself (its
// closer waits for it killably, see flush): the upload's end and the
// session's completion, or, when the PUT failed with every byte here, the
// staged commit. It says whether a session committed the file.
func (w *Writes) endStream(sf *staged) (bool, syscall.Errno) {
	errno, staged := w.finishStream(w.ctx, sf)
	if !staged {
		return errno == 0, errno
	}
	w.mu.Lock()
	if sf.unlinked || sf.localOnly || !sf.isDirty() {
		w.mu.Unlock()
		return false, 0
	}
	sf.ready = true
	w.mu.Unlock()
	names, held := w.plan(w.ctx, sf.it, sf)
	if held {
		return false, 0
	}
	if err := w.commit(sf.it, names, nil); err != nil {
		return false, syscall.EIO
	}
	return true, 0
}

// finishStream is the close of a streamed file: the rest of the bytes, then
// the session completes, with the item's files renamed away removed in it.
// staged says the upload failed with every byte still here: the file is
// staged from now on, for the caller to commit as any other.
func (w *Writes) finishStream(ctx context.Context, sf *staged) (errno syscall.Errno, staged bool) {
	sf.mu.Lock()
	up := sf.up
	if up == nil {
		sf.mu.Unlock()
		return 0, false
	}
	if up.ending {
		sf.mu.Unlock()
		<-up.ended // ended by another caller: its outcome (a fallback is its to commit)
		return up.result, false
	}
	up.ending = true
	up.closing = true
	up.cond.Broadcast()
	sf.mu.Unlock()
	w.busy.Add(1) // a commit is running: unmount waits for it
	defer w.busy.Add(-1)
	defer close(up.ended)
	<-up.done
	sf.mu.Lock()
	// A PUT that broke (a reset, an error answer) with every byte still
	// here: staged and committed whole. Not a stall: it took the deadline.
	// Not when unmount gave up on it either (w.ctx is cancelled then).
	fallBack := up.err != nil && up.err != errStreamStopped && sf.dropped == 0 && !errors.Is(up.err, remote.ErrStalled) && w.ctx.Err() == nil
	sf.mu.Unlock()
	if fallBack {
		w.log().Debug("streamed upload failed; the file is committed staged", "path", sf.it.path+"/"+EncodeName(sf.name), "fault", up.err.Error())
		w.stopStream(sf)
		return 0, true
	}

	it := sf.it
	w.mu.Lock()
	var removes []string
	for n := range it.pending {
		if it.files[n] == nil {
			removes = append(removes, n)
		}
	}
	name, itemPath := sf.name, it.path
	w.mu.Unlock()

	sf.mu.Lock()
	size, mtime, failed := sf.size, sf.mtime, up.err
	sf.mu.Unlock()
	start := time.Now()
	var err error
	if failed != nil {
		up.s.Abort(w.ctx)
		err = failed
	} else {
		err = up.s.Finish(w.ctx, removes)
	}
	sf.mu.Lock()
	sf.up = nil
	if err == nil {
		sf.dirty, sf.failed = false, false
		sf.sealed = sf.dropped > 0 // its start is not here to commit again
	} else {
		sf.dirty, sf.failed = true, true
		if sf.dropped > 0 && sf.broken == nil {
			sf.broken = err // the start is gone: nothing more can be committed
		}
	}
	dropped := sf.dropped
	sf.mu.Unlock()
	w.mu.Lock()
	if it.stream == sf {
		it.stream = nil
	}
	if err == nil {
		sf.onServer = true
		for _, n := range removes {
			delete(it.pending, n)
		}
	}
	w.mu.Unlock()
	it.session.Unlock()

	if err == nil {
		w.log().Debug("committed (streamed)", "item", itemPath, "files", name, "removed", strings.Join(removes, ","),
			"bytes", size, "sha256", up.s.SHA256(), "took", time.Since(start).Round(time.Millisecond))
		w.fs.Catalog.Invalidate(it.libID, it.id)
		w.recordTimes(it.id, []string{name}, []time.Time{mtime})
		for _, n := range removes {
			w.times.drop(it.id, n)
		}
	} else {
		var be *remote.Error
		call, fault := "PUT", err.Error()
		if errors.As(err, &be) {
			call, fault = be.Call, be.Fault
		}
		rec, rerr := w.recover(itemPath, name, sf, "commit failed", call, fault)
		if rerr == nil {
			w.mu.Lock()
			w.recovered = append(w.recovered, rec)
			w.mu.Unlock()
		} else {
			rec = "not kept: " + rerr.Error()
		}
		sf.mu.Lock()
		sf.kept = true
		sf.mu.Unlock()
		args := []any{"path", itemPath + "/" + EncodeName(name), "call", call, "fault", fault, "recovery", rec}
		if dropped > 0 {
			args = append(args, "missing", fmt.Sprintf("bytes 0-%d (sent while written, no longer here)", dropped))
		}
		w.log().Error(syscall.EIO.Error(), args...)
	}
	w.commitHeld(it)
	w.mu.Lock()
	w.settleLocked(sf)
	w.mu.Unlock()
	if err != nil {
		up.result = syscall.EIO
		return syscall.EIO, false
	}
	return 0, false
}

// commitHeld commits the files of an item that closed while a streamed
// upload had its session (their closes returned at once: see flush).
func (w *Writes) commitHeld(it *itemWrites) {
	w.mu.Lock()
	held := it.heldForStream
	it.heldForStream = false
	w.mu.Unlock()
	if !held {
		return
	}
	if names, isHeld := w.plan(w.ctx, it, nil); !isHeld && len(names) > 0 {
		_ = w.commit(it, names, nil)
	}
}

// errSealed is a write to a streamed file after its commit, through a
// descriptor still open: its start is no longer here to be sent again.
func errSealed(name string) error {
	return remote.Errorf("write", name, remote.ErrIO, "the file was committed by its streamed upload and its start is no longer here: open it again to change it")
}

// streamIno is the kernel's inode of a streaming file (0 if it does not stream).
func (sf *staged) streamIno() uint64 {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.up == nil {
		return 0
	}
	return sf.up.ino
}

func (sf *staged) sealedNow() bool {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.sealed
}
