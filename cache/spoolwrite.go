package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// A stream's spool is written with direct I/O where the file system takes
// it, and its last few blocks are kept in memory for the readers that
// follow the stream. A buffered write puts every byte of a cold read in
// fresh page-cache pages of the spool, on top of the FUSE inode's pages the
// reply fills: on the machines measured, each fresh page costs about as
// much CPU as the network and TLS work for it (BENCHMARKS.md, issue 12).
// A direct write costs a quarter of that, and the reader at the stream's
// head copies its block from memory that stays hot.

// recentBlocks is how many of a stream's latest blocks stay in memory:
// enough that the writer, the network and a reader one block behind never
// wait for each other.
const recentBlocks = 8

// directAlign is the alignment direct I/O asks of buffers, offsets and
// lengths on the file systems a cache dir sits on.
const directAlign = 4096

// recent is one of a stream's in-memory blocks.
type recent struct {
	mu sync.RWMutex // held by readers copying out; the filler locks to reuse it
	at int64        // the offset of the block it holds, -1 while none
	n  int64        // its length
	b  []byte
	// held counts FUSE replies being written from b (shareRecent). The
	// filler waits up to heldWait for them before it refills b, then gives
	// the block a new buffer instead: it never hangs on a reply.
	held *hold
}

// heldWait bounds the filler's wait for replies written from a block it is
// to refill: under CPU contention one in twenty replies was still being
// written when the filler came round (a new buffer then costs 256 page
// faults), while a wait beyond a few milliseconds would slow the stream.
const heldWait = 20 * time.Millisecond

// hold counts the replies being written from one buffer.
type hold struct {
	n     atomic.Int32
	freed chan struct{} // capacity 1: a wake-up at the last release
}

func newHold() *hold { return &hold{freed: make(chan struct{}, 1)} }

func (h *hold) release() {
	if h.n.Add(-1) == 0 {
		select {
		case h.freed <- struct{}{}:
		default:
		}
	}
}

// wait reports whether the buffer is free, waiting at most d for it.
func (h *hold) wait(d time.Duration) bool {
	if h.n.Load() == 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-h.freed:
			if h.n.Load() == 0 {
				return true
			}
		case <-t.C:
			return h.n.Load() == 0
		}
	}
}

// spoolWriter writes a stream's blocks to its spool in order, in a
// goroutine of its own, so that the network read of the next block and the
// disk write of this one overlap.
type spoolWriter struct {
	st     *stream
	free   chan *recent  // blocks written (or never used), to be filled again
	work   chan *recent  // blocks filled, to be written
	failed chan struct{} // closed at the first failed write: the filler stops
	done   chan error    // the writer's end: its first error, or nil
}

// ring returns the stream's recent blocks, allocated at its first transfer
// and kept for its resumes.
func (st *stream) ring(bs int64) []*recent {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.recent == nil {
		n := min(int64(recentBlocks), (st.o.size+bs-1)/bs)
		for range n {
			st.recent = append(st.recent, &recent{at: -1, b: newBlock(bs), held: newHold()})
		}
	}
	return st.recent
}

func (st *stream) startWriter(bs int64) *spoolWriter {
	ring := st.ring(bs)
	w := &spoolWriter{st: st, free: make(chan *recent, len(ring)), work: make(chan *recent, len(ring)),
		failed: make(chan struct{}), done: make(chan error, 1)}
	for _, r := range ring {
		w.free <- r
	}
	go w.run()
	return w
}

func (w *spoolWriter) run() {
	st := w.st
	var err error
	for r := range w.work {
		if err != nil {
			continue // drained until the filler stops
		}
		if err = st.writeBlock(r.b[:r.n], r.at); err != nil {
			close(w.failed)
			continue
		}
		st.mu.Lock()
		st.filled = r.at + r.n
		st.signal()
		st.mu.Unlock()
		w.free <- r
	}
	w.done <- err
}

// next returns a block to fill, unpublished so that no reader copies from
// it meanwhile; false once a write has failed.
func (w *spoolWriter) next() (*recent, bool) {
	select {
	case r := <-w.free:
		r.mu.Lock()
		r.at = -1 // no new shares of it
		held := r.held
		r.mu.Unlock()
		if !held.wait(heldWait) {
			r.mu.Lock()
			r.b, r.held = newBlock(int64(len(r.b))), newHold()
			r.mu.Unlock()
		}
		return r, true
	case <-w.failed:
		return nil, false
	}
}

// put publishes r, filled with n bytes at, and queues its write.
func (w *spoolWriter) put(r *recent, at, n int64) {
	r.mu.Lock()
	r.at, r.n = at, n
	r.mu.Unlock()
	w.work <- r
}

// finish waits for the queued writes and returns the first error.
func (w *spoolWriter) finish() error {
	close(w.work)
	return <-w.done
}

// writeBlock writes b at off: directly when both are aligned, else (the
// object's last block, a file system that refuses direct I/O) through the
// page cache.
func (st *stream) writeBlock(b []byte, off int64) error {
	if st.writesDirect() && aligned(b, off) {
		if _, err := st.direct.WriteAt(b, off); err == nil {
			return nil
		}
		// Refused at write (some file systems take O_DIRECT at open
		// only): through the page cache from now on.
		st.directOff.Store(true)
	}
	_, err := st.f.WriteAt(b, off)
	return err
}

func (st *stream) writesDirect() bool { return st.direct != nil && !st.directOff.Load() }

func aligned(b []byte, off int64) bool {
	return len(b) > 0 && off%directAlign == 0 && len(b)%directAlign == 0 &&
		uintptr(unsafe.Pointer(&b[0]))%directAlign == 0
}

// dropRecent lets the recent blocks go once the transfer has ended: each
// stream would otherwise keep recentBlocks of memory for as long as its
// object is remembered. A reader still copying from one keeps it alive.
func (st *stream) dropRecent() {
	st.mu.Lock()
	if !st.running {
		st.recent = nil
	}
	st.mu.Unlock()
}

// inRecent finds the recent block holding the n bytes at off and calls f
// with them while the block is read-locked (the filler cannot reuse it
// meanwhile); false if no recent block holds them all.
func (st *stream) inRecent(off int64, n int, bs int64, f func(r *recent, b []byte)) bool {
	st.mu.Lock()
	ring := st.recent
	st.mu.Unlock()
	at := off / bs * bs
	for _, r := range ring {
		r.mu.RLock()
		if r.at == at && off-at+int64(n) <= r.n {
			f(r, r.b[off-at:off-at+int64(n)])
			r.mu.RUnlock()
			return true
		}
		r.mu.RUnlock()
	}
	return false
}

// readRecent copies the bytes at off into p if a recent block holds them
// all, and reports whether it did.
func (st *stream) readRecent(p []byte, off, bs int64) bool {
	return st.inRecent(off, len(p), bs, func(_ *recent, b []byte) { copy(p, b) })
}

// shareRecent returns the n bytes at off as a slice of the recent block
// that holds them all, counted as held until release: a FUSE reply written
// from it copies nothing more. false if no recent block holds them.
func (st *stream) shareRecent(off int64, n int, bs int64) (b []byte, release func(), ok bool) {
	ok = st.inRecent(off, n, bs, func(r *recent, rb []byte) {
		r.held.n.Add(1)
		b, release = rb, sync.OnceFunc(r.held.release)
	})
	return b, release, ok
}

// The stream keeps at most leadBlocks ahead of its furthest reader, so
// that the reader finds its block among the recent ones instead of reading
// it back from the disk the direct write sent it to. It waits at most
// leadWait per block: a reader that pauses slows the stream to a trickle,
// which keeps the transfer alive (well within --timeout) and lets the
// spool fill for a later open.
const (
	leadBlocks = recentBlocks - 2
	leadWait   = 200 * time.Millisecond
)

// readUpTo records that a reader has asked for the bytes up to end.
func (st *stream) readUpTo(end int64) {
	for {
		cur := st.readTo.Load()
		if end <= cur {
			return
		}
		if st.readTo.CompareAndSwap(cur, end) {
			select {
			case st.moved <- struct{}{}:
			default:
			}
			if end >= st.o.size {
				st.dropRecent()
			}
			return
		}
	}
}

// keepLead waits, before the block at is read from the network, until a
// reader is within leadBlocks of it, for at most leadWait.
func (st *stream) keepLead(ctx context.Context, at, bs int64) {
	if !st.writesDirect() {
		return // through the page cache: readers find the spool there
	}
	var timer <-chan time.Time
	for at-st.readTo.Load() > leadBlocks*bs {
		if timer == nil {
			t := time.NewTimer(leadWait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-st.moved:
		case <-timer:
			return
		case <-ctx.Done():
			return
		}
	}
}
