package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// stream fills an object's spool file from one sequential transfer, for
// endpoints that cannot start anywhere but byte 0 (a download that ignores
// Range, a one-shot guest URL). Readers wait until the bytes they need are
// spooled; an evicted block is read back from the spool, never re-fetched.
type stream struct {
	o *object
	f *os.File

	mu      sync.Mutex
	filled  int64
	running bool
	err     error         // why the last transfer stopped early
	gen     int           // transfers started
	notify  chan struct{} // closed and replaced at each change
}

// ErrShort means a stream ended before the object's size.
var ErrShort = errors.New("transfer ended before the expected size")

// startStream makes sure a transfer fills the spool; body, if given, is an
// already-open stream from byte 0. Called with o.mu held.
func (o *object) startStream(body io.ReadCloser) *stream {
	if o.st == nil {
		f, err := os.OpenFile(o.spool, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		o.st = &stream{o: o, f: f, notify: make(chan struct{})}
		if err != nil {
			o.st.err = err
			if body != nil {
				body.Close()
			}
			return o.st
		}
	}
	st := o.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.running || st.filled >= o.size || st.f == nil {
		if body != nil {
			body.Close()
		}
		return st
	}
	st.running = true
	st.gen++
	go st.fill(body)
	return st
}

func (st *stream) fill(body io.ReadCloser) {
	o := st.o
	err := func() error {
		if body == nil {
			o.c.Fetches.Add(1)
			var err error
			body, _, err = o.src.Open(o.c.ctx, 0, -1)
			if err != nil {
				return err
			}
		}
		defer body.Close()
		st.mu.Lock()
		skip := st.filled
		st.mu.Unlock()
		// A restarted transfer begins at byte 0 again: skip what is spooled.
		if _, err := io.CopyN(io.Discard, body, skip); err != nil {
			return err
		}
		// Whole blocks at a time: one write to the spool per block, and the
		// block goes straight into the LRU, so a reader close behind the
		// stream never touches the disk.
		bs := o.c.opts.BlockSize
		for at := skip; ; {
			size := bs
			if rest := o.size - at; rest < size {
				size = rest
			}
			buf := make([]byte, size)
			n, rerr := io.ReadFull(body, buf)
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
			if _, err := st.f.WriteAt(buf, at); err != nil {
				return err
			}
			o.c.blocks.Add(o.key(at/bs), buf)
			at += size
			st.mu.Lock()
			st.filled = at
			st.signal()
			st.mu.Unlock()
			if at >= o.size {
				return nil
			}
		}
	}()
	st.mu.Lock()
	st.running = false
	st.err = err
	st.signal()
	st.mu.Unlock()
}

// ErrChanged means the object no longer matches what was stat'ed.
var ErrChanged = errors.New("object changed during transfer")

func (st *stream) signal() {
	close(st.notify)
	st.notify = make(chan struct{})
}

// waitFor blocks until end bytes are spooled. If the transfer stopped early,
// it restarts it once for this reader (restart), then gives up with its error.
func (st *stream) waitFor(ctx context.Context, end int64, restart func()) error {
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
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (st *stream) close() {
	if st.f != nil {
		st.f.Close()
	}
}
