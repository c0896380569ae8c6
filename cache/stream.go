package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// stream fills an object's spool file from one sequential transfer, for
// endpoints that cannot start anywhere but byte 0 (a download that ignores
// Range, a one-shot guest URL), and for a large object read from byte 0
// where the endpoint takes Range (object.go: streamFromReadAheads). Readers
// wait until the bytes they need are spooled, unless they are far ahead
// of the stream on an endpoint that takes Range; an evicted block is read
// back from the spool, never re-fetched.
//
// A transfer that loses its stream (a reset, a body cut short) resumes from
// the bytes spooled: with Range where the endpoint takes it, else with a new
// transfer from byte 0 whose first bytes are checked against the spool
// before they are skipped. A resume that brings nothing new ends the
// transfer with its error. A transfer no reader waits for any more (every
// waiter interrupted) is cancelled; the next reader resumes it.
type stream struct {
	o      *object
	f      *os.File
	direct *os.File // f opened for direct writes, nil where refused (spoolwrite.go)

	directOff atomic.Bool // direct writes refused after the open

	mu      sync.Mutex
	filled  int64
	running bool
	err     error // why the last transfer stopped early
	// spoolFailed: a write to the spool failed (a full or broken cache
	// dir). Where the endpoint takes Range, the blocks past filled are then
	// fetched by Range into the LRU (object.far) and the stream is not
	// started again.
	spoolFailed bool
	gen         int // transfers started
	waiters     int // readers waiting on the running transfer
	cancel      context.CancelFunc
	notify      chan struct{} // closed and replaced at each change
	recent      []*recent     // the latest blocks spooled, for readers to copy from
	readTo      atomic.Int64  // the furthest end read so far (spoolwrite.go: the lead)
	moved       chan struct{} // readTo advanced (capacity 1: a wake-up, not a count)
}

// maxStuck is how many resumes in a row may bring no new block before a
// lost transfer fails.
const maxStuck = 3

// resumeWait is the pause before a resume: none after progress, then
// doubling from 100 ms, with jitter.
func resumeWait(stuck int) time.Duration {
	if stuck == 0 {
		return 0
	}
	d := 100 * time.Millisecond << (stuck - 1)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrShort means a stream ended before the object's size.
var ErrShort = errors.New("transfer ended before the expected size")

// startStream makes sure a transfer fills the spool; body, if given, is an
// already-open stream from byte 0, opened with ctx, which cancel ends.
// Called with o.mu held.
func (o *object) startStream(ctx context.Context, cancel context.CancelFunc, body io.ReadCloser) *stream {
	if o.st == nil {
		f, err := os.OpenFile(o.spool, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		o.st = &stream{o: o, f: f, notify: make(chan struct{}), moved: make(chan struct{}, 1)}
		if err != nil {
			o.st.err = err
			o.st.f = nil
		} else {
			o.st.direct = openDirect(o.spool)
		}
	}
	st := o.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.running || st.filled >= o.size || st.f == nil || st.spoolFailed && o.rangeOK {
		if body != nil {
			body.Close()
			cancel()
		}
		return st
	}
	if body == nil {
		ctx, cancel = context.WithCancel(o.c.ctx)
	}
	st.running = true
	st.cancel = cancel
	st.gen++
	o.c.goTracked(func() { st.fill(ctx, cancel, body) })
	return st
}

// byRange says whether the spool failed where the endpoint takes Range:
// the readers then fetch the rest by Range (object.far), and the stream
// neither resumes nor starts again.
func (st *stream) byRange() bool {
	st.o.mu.Lock()
	defer st.o.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.spoolFailed && st.o.rangeOK
}

// transient asks the source whether an error is worth a resume; sources
// that cannot tell have every error but a change resumed.
func (o *object) transient(err error) bool {
	if errors.Is(err, ErrChanged) || errors.Is(err, context.Canceled) {
		return false
	}
	if t, ok := o.src.(interface{ Transient(error) bool }); ok {
		return errors.Is(err, ErrShort) || t.Transient(err)
	}
	return true
}

func (st *stream) fill(ctx context.Context, cancel context.CancelFunc, body io.ReadCloser) {
	defer cancel()
	o := st.o
	var err error
	for stuck := 0; ; {
		st.mu.Lock()
		from := st.filled
		st.mu.Unlock()
		ranged := false
		if body == nil {
			o.c.Fetches.Add(1)
			body, ranged, err = o.src.Open(ctx, from, -1)
			if err == nil && ranged {
				o.mu.Lock()
				o.rangeOK = true
				o.mu.Unlock()
			}
		}
		if err == nil {
			err = st.copy(ctx, body, from, ranged)
			body.Close()
			body = nil
		}
		if err == nil || ctx.Err() != nil || !o.transient(err) || st.byRange() {
			break
		}
		st.mu.Lock()
		progress := st.filled > from
		st.mu.Unlock()
		// Resume while tries bring bytes, and a few times when they do not
		// (blocks are kept whole: a loss within a block brings none); the
		// source's own retries (within its deadline) cover a resume that
		// cannot start.
		if progress {
			stuck = 0
		} else if stuck++; stuck > maxStuck {
			break
		}
		if sleep(ctx, resumeWait(stuck)) != nil {
			break
		}
	}
	if err != nil && ctx.Err() != nil {
		err = context.Canceled // no one waits any more, or the cache closed
	}
	if err != nil && !st.byRange() { // else the readers fetch by Range at once
		o.mu.Lock()
		o.remember(err)
		o.mu.Unlock()
	}
	st.mu.Lock()
	st.running = false
	st.err = err
	st.signal()
	if err != nil || st.readTo.Load() >= st.filled {
		st.recent = nil // no reader follows: a resume allocates them again
	}
	st.mu.Unlock()
}

// copy spools body, which starts at from if ranged, else at byte 0: then
// the bytes already spooled are compared with it, not trusted.
func (st *stream) copy(ctx context.Context, body io.Reader, from int64, ranged bool) error {
	o := st.o
	if !ranged && from > 0 {
		if err := st.verify(body, from); err != nil {
			return err
		}
	}
	w := st.startWriter(o.c.opts.BlockSize)
	err := st.fillBlocks(ctx, body, from, w)
	if werr := w.finish(); werr != nil {
		st.mu.Lock()
		st.spoolFailed = true
		st.mu.Unlock()
		return werr
	}
	return err
}

// fillBlocks reads body from at into recent blocks, whole blocks at a time,
// and hands each to the writer.
func (st *stream) fillBlocks(ctx context.Context, body io.Reader, at int64, w *spoolWriter) error {
	o := st.o
	bs := o.c.opts.BlockSize
	for at < o.size {
		size := min(bs, o.size-at)
		st.keepLead(ctx, at, bs)
		r, ok := w.next()
		if !ok {
			return nil // the writer failed: finish says why
		}
		n, rerr := io.ReadFull(body, r.b[:size])
		if rerr == nil && at+size == o.size {
			// The last block: a stream longer than the size stat'ed has changed.
			if m, _ := body.Read(make([]byte, 1)); m > 0 {
				return fmt.Errorf("%w: more than %d bytes", ErrChanged, o.size)
			}
			rerr = io.EOF
		}
		if int64(n) < size { // a partial block is not kept: blocks stay aligned
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				return ErrShort
			}
			return rerr
		}
		w.put(r, at, size)
		at += size
	}
	return nil
}

// verify reads the first n bytes of body and checks them against the spool.
func (st *stream) verify(body io.Reader, n int64) error {
	got := make([]byte, 256<<10)
	have := make([]byte, len(got))
	for at := int64(0); at < n; {
		k := int64(len(got))
		if n-at < k {
			k = n - at
		}
		if _, err := io.ReadFull(body, got[:k]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return ErrShort
			}
			return err
		}
		if _, err := st.f.ReadAt(have[:k], at); err != nil {
			return err
		}
		if !bytes.Equal(got[:k], have[:k]) {
			return fmt.Errorf("%w: bytes before %d differ from the first transfer's", ErrChanged, at+k)
		}
		at += k
	}
	return nil
}

// ErrChanged means the object no longer matches what was stat'ed.
var ErrChanged = errors.New("object changed during transfer")

// covers reports whether end bytes are spooled.
func (st *stream) covers(end int64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.filled >= end
}

func (st *stream) signal() {
	close(st.notify)
	st.notify = make(chan struct{})
}

// waitFor blocks until end bytes are spooled. A transfer that stopped early
// is started again (resumed) once for this reader, unless it failed while
// this open was reading, within failMemory: then its error is the answer. A
// reader interrupted while no other waits cancels the transfer.
func (st *stream) waitFor(ctx context.Context, src Source, end int64, restart func()) error {
	restarted := false
	for {
		st.mu.Lock()
		filled, running, err, gen, ch := st.filled, st.running, st.err, st.gen, st.notify
		st.mu.Unlock()
		if filled >= end {
			return nil
		}
		if st.f == nil {
			return err
		}
		if !running {
			st.o.mu.Lock()
			ferr := st.o.failedFor(src)
			st.o.mu.Unlock()
			if ferr != nil {
				return ferr
			}
			if restarted || errors.Is(err, ErrChanged) {
				return err
			}
			restarted = true
			restart()
			st.mu.Lock()
			if st.gen == gen && !st.running {
				st.mu.Unlock()
				return err
			}
			st.mu.Unlock()
			continue
		}
		st.mu.Lock()
		if st.gen != gen || !st.running {
			st.mu.Unlock()
			continue
		}
		st.waiters++
		st.mu.Unlock()
		select {
		case <-ch:
			st.mu.Lock()
			st.waiters--
			st.mu.Unlock()
		case <-ctx.Done():
			st.mu.Lock()
			st.waiters--
			if st.waiters == 0 && st.running && st.gen == gen {
				st.cancel()
			}
			st.mu.Unlock()
			return ctx.Err()
		}
	}
}

func (st *stream) close() {
	st.mu.Lock()
	if st.cancel != nil {
		st.cancel()
	}
	st.mu.Unlock()
	if st.f != nil {
		st.f.Close()
	}
	if st.direct != nil {
		st.direct.Close()
	}
}
