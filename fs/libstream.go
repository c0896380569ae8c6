package fs

// Streamed uploads. A library file written in order from byte 0 (cp, tar,
// dd, `>`), by one writer, is uploaded while it is written: once it has
// StreamAfter bytes, its update session is created and one PUT (chunked,
// the file added without size or checksum) reads the bytes as they come
// from a ring in memory holding the last streamWindow bytes written; the
// file's first streamKeep bytes are also on local disk, nothing after
// them. The session completes at close, so the server changes at close,
// once, as for staged files. What falls back: a rewrite or a shrinking
// truncate while every byte is still at hand (the disk's start and the
// ring meet) ends the upload (the session is failed) and the file is
// staged whole as usual; one after that fails with EIO, and so do reads of
// bytes no longer here. fsync waits until the server has every byte
// written (they are committed at close). Files with held names, editor
// files and .ovf never stream; nor does a file whose item has a session
// running.
//
// Why memory and not the staged file: each byte then costs one copy in
// and one copy out, against a write to and a read from the page cache (and
// its block allocation and hole punching), which on two cores shared with
// the PUT's TLS was most of a streamed cp's time.

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

// streamWindow is the ring of a streamed upload: how far a writer may be
// ahead of the PUT (it waits beyond), and how much of what was sent stays
// at hand for a fallback or recovery.
const streamWindow = 8 << 20

// streamKeep is how much of a streamed file's start is also written to
// local disk, so that a rewrite of it (an editor, a format that patches
// its header) or a PUT broken early can fall back to staging.
const streamKeep = 16 << 20

var errStreamStopped = errors.New("streamed upload stopped: the file is staged instead")

// upstream is a streamed upload in progress; its fields are under the
// staged file's mu.
type upstream struct {
	s    Stream
	ino  uint64 // the kernel's inode of the file (for callerKeepsWriter)
	ring []byte // byte k of the file, for k in [lo, size), is ring[k%len(ring)]
	lo   int64
	// start: [0, start) was in the staged file when the upload started and
	// is read from there; disk: [0, disk) is in the staged file.
	start, disk int64
	sent        int64 // [0, sent) went to the PUT
	// armed: start, disk and lo are set and the upload is the file's; the
	// PUT, which starts with the session, reads nothing before.
	armed   bool
	err     error // the upload broke or was stopped
	closing bool  // send the rest, then stop
	done    chan struct{}
	// ending: one finishStream ends the upload; others (a close and the
	// unmount at once) wait for ended and take its outcome.
	ending  bool
	ended   chan struct{}
	result  syscall.Errno
	stopped chan struct{} // made by the stopStream under way, closed when it is done
	// writing: WriteTo writes from the ring without sf.mu; freeLater: the
	// ring was freed meanwhile, and WriteTo unmaps it when its write returns.
	writing, freeLater bool
	cond               *sync.Cond // on the staged file's mu
}

// freeRing returns the ring's memory, once the PUT has ended and the
// upload is no longer the file's (sf.up). The ring is mapped, not
// allocated: its pages are the process's only while it streams, and the
// garbage collector's heap goal does not grow by it.
func (up *upstream) freeRing() {
	if up.writing {
		up.freeLater = true // WriteTo's write in progress: it frees the ring
		return
	}
	if up.ring != nil {
		_ = syscall.Munmap(up.ring)
		up.ring = nil
	}
}

// complete says whether every byte written is still at hand (the staged
// file's start and the ring meet): the file can then be staged instead.
func (up *upstream) complete() bool { return up.lo <= up.disk }

// write is a write through a handle: local (to the ring, while streaming),
// then the streamed upload is started. A streaming write that finds the
// upload broken or must stop it (a rewrite) stops it and is written again,
// staged.
func (w *Writes) write(ctx context.Context, sf *staged, data []byte, off int64, appendMode bool, ino uint64) (int, error) {
	for {
		n, err, start, stop := sf.writeLocal(ctx, data, off, appendMode, w.StreamAfter)
		if stop {
			w.stopStream(sf)
			continue // not streaming any more
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
		return n, nil
	}
}

// writeLocal stores data in the staged file, or in the ring while it
// streams; it says whether a streamed upload should start, or stop first
// (a rewrite, or the upload broke) and the write be tried again.
func (sf *staged) writeLocal(ctx context.Context, data []byte, off int64, appendMode bool, after int64) (n int, err error, start, stop bool) {
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
	if up := sf.up; up != nil {
		if off >= sf.size && up.err == nil {
			if n, err := sf.appendStream(ctx, off-sf.size, data); err != errStreamBroke || n > 0 {
				return n, err, false, false
			}
		}
		if off < sf.size {
			sf.noStream = true
		}
		return 0, nil, false, true
	}
	if off < sf.size {
		sf.noStream = true
	}
	if off < sf.dropped {
		return 0, remote.Errorf("write", sf.name, remote.ErrIO, "a write at byte %d of a file whose first %d bytes were uploaded and are no longer here", off, sf.dropped), false, false
	}
	appending := off >= sf.size
	n, err = sf.writeAt(data, off)
	if n > 0 {
		sf.failed = false
		if sf.hash != nil && off == sf.hashed && appending {
			sf.hash.Write(data[:n])
			sf.hashed += int64(n)
		} else {
			sf.hash = nil // not sequential: the commit hashes the file
		}
	}
	start = after > 0 && sf.up == nil && !sf.noStream && sf.dropped == 0 && sf.size >= after
	return n, err, start, false
}

// errStreamBroke says the upload failed while a write waited for the ring.
var errStreamBroke = errors.New("streamed upload broke")

// appendStream appends gap zero bytes, then data, to a streaming file
// (sf.mu held): into the ring, and into the staged file while under
// streamKeep. It waits (sf.mu released) while the ring has no room, until
// the PUT takes bytes, fails (errStreamBroke: nothing of data is stored)
// or ctx ends (EINTR). n is how much of data was stored.
func (sf *staged) appendStream(ctx context.Context, gap int64, data []byte) (n int, err error) {
	up := sf.up
	for gap > 0 || len(data) > 0 {
		var p []byte
		if gap > 0 {
			p = zeros[:min(gap, int64(len(zeros)))]
		} else {
			p = data[:min(len(data), len(up.ring)/2)]
		}
		k := int64(len(p))
		if sf.size+k-up.sent > int64(len(up.ring)) {
			wake := context.AfterFunc(ctx, func() {
				sf.mu.Lock()
				up.cond.Broadcast()
				sf.mu.Unlock()
			})
			for up.err == nil && sf.size+k-up.sent > int64(len(up.ring)) && ctx.Err() == nil {
				up.cond.Wait()
			}
			wake()
			if n > 0 && (up.err != nil || ctx.Err() != nil) {
				return n, nil // a short write: the caller's next one says why
			}
			if up.err != nil {
				return 0, errStreamBroke
			}
			if ctx.Err() != nil {
				return 0, syscall.EINTR
			}
		}
		if sf.size < streamKeep {
			d := p[:min(k, streamKeep-sf.size)]
			if _, err := sf.f.WriteAt(d, sf.size); err != nil {
				return n, err
			}
			up.disk = sf.size + int64(len(d))
		}
		at := int(sf.size % int64(len(up.ring)))
		if c := copy(up.ring[at:], p); c < len(p) {
			copy(up.ring, p[c:])
		}
		sf.size += k
		up.lo = max(up.lo, sf.size-int64(len(up.ring)))
		sf.dirty, sf.failed = true, false
		sf.mtime = time.Now()
		up.cond.Broadcast()
		if gap > 0 {
			gap -= k
		} else {
			data, n = data[k:], n+int(k)
		}
	}
	return n, nil
}

// zeros are what a hole in a streamed file (a write past its end, a
// truncate that extends it) sends.
var zeros = make([]byte, 256<<10)

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
	ring, err := syscall.Mmap(-1, 0, streamWindow, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		it.session.Unlock()
		return // staged; tried again at a later write
	}
	up := &upstream{ino: ino, ring: ring, done: make(chan struct{}), ended: make(chan struct{}), cond: sync.NewCond(&sf.mu)}
	s, err := w.lw.StartStream(withOrigin(w.ctx, origin), it.id, name, streamReader{sf, up})
	if err != nil {
		up.freeRing()
		it.session.Unlock()
		sf.mu.Lock()
		sf.noStream = true
		sf.mu.Unlock()
		w.log().Debug("streamed upload not started; staged", "path", it.path+"/"+EncodeName(name), "fault", err.Error())
		return
	}
	sf.mu.Lock()
	if sf.noStream || sf.up != nil || sf.broken != nil || sf.dropped > 0 {
		up.err = errStreamStopped // the PUT's body, waiting for armed, gives up
		up.cond.Broadcast()
		sf.mu.Unlock()
		s.Abort(w.ctx)
		up.freeRing()
		it.session.Unlock()
		return
	}
	up.s = s
	up.start, up.disk, up.lo = sf.size, sf.size, sf.size
	up.armed = true
	up.cond.Broadcast()
	sf.up = up
	// The commit of a staged fallback hashes the file itself.
	sf.hash = nil
	sf.mu.Unlock()
	w.mu.Lock()
	it.stream = sf
	w.mu.Unlock()
	go func() {
		<-s.Done()
		sf.mu.Lock()
		if up.err == nil {
			if up.err = s.Err(); up.err == nil && !(up.closing && up.sent >= sf.size) {
				up.err = remote.Errorf("PUT", name, remote.ErrIO, "the server answered before the end of the file")
			}
		}
		up.cond.Broadcast()
		sf.mu.Unlock()
		close(up.done)
	}()
}

// streamReader is the PUT's body: what is written, as it comes, from the
// staged file's start and then from the ring; io.EOF at the close.
type streamReader struct {
	sf *staged
	up *upstream
}

func (r streamReader) Read(p []byte) (int, error) {
	sf, up := r.sf, r.up
	sf.mu.Lock()
	defer sf.mu.Unlock()
	for up.err == nil && (!up.armed || !up.closing && up.sent >= sf.size) {
		up.cond.Wait()
	}
	if up.err != nil {
		return 0, up.err
	}
	if up.sent >= sf.size {
		return 0, io.EOF
	}
	if up.ring == nil { // freed: the upload is over (a transport reading late)
		return 0, errStreamStopped
	}
	var n int
	if up.sent < up.start {
		// Written before the upload started: in the staged file, unchanged
		// while the upload runs (a rewrite stops it first).
		var err error
		if n, err = sf.readAt(p[:min(up.start-up.sent, int64(len(p)))], up.sent); err != nil {
			return n, err
		}
	} else {
		n = int(min(sf.size-up.sent, int64(len(p))))
		up.ringCopy(p[:n], up.sent)
	}
	up.sent += int64(n)
	up.cond.Broadcast()
	return n, nil
}

// WriteTo hands the transport the ring's bytes in place, without the copy
// Read makes: the slice [sent, size) is not overwritten while it is being
// written, since the writer waits for room below sent+len(ring), and
// sf.mu is not held across the network write. A ring freed meanwhile (the
// PUT ended while its transport still wrote) is unmapped by this loop when
// its write returns.
func (r streamReader) WriteTo(w io.Writer) (int64, error) {
	sf, up := r.sf, r.up
	var total int64
	for {
		sf.mu.Lock()
		for up.err == nil && (!up.armed || !up.closing && up.sent >= sf.size) {
			up.cond.Wait()
		}
		if up.err == nil && up.sent < up.start || up.ring == nil {
			sf.mu.Unlock()
			// The start, in the staged file: read through a buffer.
			var buf [64 << 10]byte
			n, err := r.Read(buf[:])
			if n > 0 {
				m, werr := w.Write(buf[:n])
				total += int64(m)
				if werr != nil {
					return total, werr
				}
			}
			if err == io.EOF {
				return total, nil
			}
			if err != nil {
				return total, err
			}
			continue
		}
		if up.err != nil {
			sf.mu.Unlock()
			return total, up.err
		}
		if up.sent >= sf.size {
			sf.mu.Unlock()
			return total, nil
		}
		at := int(up.sent % int64(len(up.ring)))
		p := up.ring[at:min(len(up.ring), at+int(min(sf.size-up.sent, 1<<20)))]
		up.writing = true
		sf.mu.Unlock()
		n, err := w.Write(p)
		sf.mu.Lock()
		up.writing = false
		if up.freeLater {
			up.freeLater = false
			up.freeRing()
		}
		up.sent += int64(n)
		total += int64(n)
		up.cond.Broadcast()
		sf.mu.Unlock()
		if err != nil {
			return total, err
		}
	}
}

// readStreaming serves a read of a streaming file (sf.mu held): from the
// staged file, then from the ring; EIO for bytes no longer here. ok is
// false when sf does not stream.
func (sf *staged) readStreaming(dest []byte, off int64) (n int, ok bool, err error) {
	up := sf.up
	if up == nil {
		return 0, false, nil
	}
	end := min(off+int64(len(dest)), sf.size)
	if off >= end {
		return 0, true, nil
	}
	dest = dest[:end-off]
	if off < up.disk {
		if n, err = sf.readAt(dest[:min(up.disk, end)-off], off); err != nil || n == len(dest) {
			return n, true, err
		}
	}
	if from := off + int64(n); from < up.lo {
		return n, true, remote.Errorf("read", sf.name, remote.ErrIO,
			"bytes %d-%d were uploaded while the file was written and are no longer here (read it again after its close)", up.disk, up.lo)
	}
	up.ringCopy(dest[n:], off+int64(n))
	return len(dest), true, nil
}

// ringCopy copies the file's bytes from off, which the ring holds, into dst.
func (up *upstream) ringCopy(dst []byte, off int64) {
	at := int(off % int64(len(up.ring)))
	if c := copy(dst, up.ring[at:]); c < len(dst) {
		copy(dst[c:], up.ring)
	}
}

// keepRing writes what the ring holds beyond the staged file's start into
// the staged file, once the upload has ended unsent (sf.mu held), so that
// the file is staged from then on: whole if the two met (complete), else
// from lo on, its start punched out (dropped) and the file broken by cause
// (it cannot be committed any more; nil cause: a rewrite stopped it). A
// stall is not tried again either: it took the deadline.
func (sf *staged) keepRing(up *upstream, cause error) {
	from := max(up.lo, up.disk)
	for from < sf.size {
		at := int(from % int64(len(up.ring)))
		p := up.ring[at:min(len(up.ring), at+int(sf.size-from))]
		if _, err := sf.f.WriteAt(p, from); err != nil {
			if sf.broken == nil {
				sf.broken = remote.Errorf("write", sf.name, remote.ErrIO, "keeping a streamed file's bytes: %v", err)
			}
			break
		}
		from += int64(len(p))
	}
	if !up.complete() {
		// FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE: what is kept starts at lo.
		_ = syscall.Fallocate(int(sf.f.Fd()), 0x3, 0, up.lo)
		sf.dropped = up.lo
	}
	if sf.broken == nil && (!up.complete() || errors.Is(cause, remote.ErrStalled)) {
		if cause == nil {
			cause = remote.Errorf("write", sf.name, remote.ErrIO, "a rewrite of a file whose bytes %d-%d were uploaded while it was written and are no longer here", up.disk, up.lo)
		}
		sf.broken = cause
	}
}

// streaming says whether sf has a streamed upload running.
func (sf *staged) streaming() bool {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.up != nil
}

// stopStream ends a streamed upload without committing it (its session is
// failed): the file is staged from then on (whole, if every byte is still
// at hand; else it is broken, see keepRing). A second caller meanwhile
// waits for the first.
func (w *Writes) stopStream(sf *staged) {
	sf.mu.Lock()
	up := sf.up
	if up == nil {
		sf.mu.Unlock()
		return
	}
	if up.stopped != nil {
		sf.mu.Unlock()
		<-up.stopped
		return
	}
	up.stopped = make(chan struct{})
	defer close(up.stopped)
	if up.err == nil {
		up.err = errStreamStopped
	}
	up.cond.Broadcast()
	sf.mu.Unlock()
	up.s.Abort(w.ctx) // ends the PUT (its body gives up.err) and fails the session
	<-up.done
	sf.mu.Lock()
	cause := up.err
	if cause == errStreamStopped {
		cause = nil
	}
	sf.keepRing(up, cause)
	sf.up, sf.noStream = nil, true
	up.freeRing()
	staged := cause != nil && sf.broken == nil
	sf.mu.Unlock()
	if staged {
		w.log().Debug("streamed upload failed; the file is staged instead", "path", sf.it.path+"/"+EncodeName(sf.name), "fault", cause.Error())
	}
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
	w.busy.Add(1) // a commit is running: Busy says so (its caller is counted in inflight)
	defer w.busy.Add(-1)
	defer close(up.ended)
	<-up.done
	sf.mu.Lock()
	// A PUT that broke (a reset, an error answer) with every byte still
	// here: staged and committed whole. Not a stall: it took the deadline.
	// Not when unmount gave up on it either (w.ctx is cancelled then).
	fallBack := up.err != nil && up.err != errStreamStopped && up.complete() && !errors.Is(up.err, remote.ErrStalled) && w.ctx.Err() == nil
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
	if err == nil {
		sf.dirty, sf.failed = false, false
		if sf.size > up.disk {
			// What followed the start on disk went with the ring: not here
			// to commit again, nor to read.
			_ = syscall.Fallocate(int(sf.f.Fd()), 0x3, 0, sf.size)
			sf.dropped = sf.size
			sf.sealed = true
		}
	} else {
		sf.dirty, sf.failed = true, true
		sf.keepRing(up, err) // the bytes at hand go to recovery; a missing start breaks the file
	}
	sf.up = nil
	up.freeRing()
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
			"bytes", size, "took", time.Since(start).Round(time.Millisecond))
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
