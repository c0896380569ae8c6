package cache

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

const (
	modeUnknown = iota // no transfer yet: the first answer tells
	modeRanged         // the endpoint honours Range: fetch only the blocks needed
	modeStream         // one stream from byte 0 fills a spool file
)

// A read from byte 0 of an object this many read-aheads long or longer is
// served by one stream to the end even where the endpoint honours Range:
// the stream's few blocks are reused and its spool serves re-reads, where
// blocks fetched into the LRU are fresh memory for every byte of a cold read
// (BENCHMARKS.md, issue 12: 3.7 CPU-s/GiB against the stream's 2.2). Reads
// far ahead of the stream still fetch their blocks by Range (farAhead).
const streamFromReadAheads = 2

// farAhead is how many read-aheads beyond a stream's end a read must be to
// be fetched by Range instead of waiting for the stream.
const farAhead = 2

// object is the cache's state for one Source ID.
type object struct {
	c     *Cache
	src   Source
	id    string
	size  int64
	spool string

	active int    // readers inside ReadAt (guarded by Cache.mu)
	used   uint64 // Cache.tick at the last use (guarded by Cache.mu)

	mu       sync.Mutex
	mode     int
	rangeOK  bool             // the endpoint answered a Range (even in modeStream)
	inflight map[int64]*fetch // ranged fetches under way, by block
	lastEnd  int64            // where the previous read ended: sequential detection
	st       *stream
	readers  map[Source]int // sources (one per open file) reading now
	failErr  error          // why the last transfer failed
	failAt   time.Time      // and when
	failSrcs map[Source]bool
	cancels  map[Source]map[*int]context.CancelFunc // reads under way, for Abandon
}

// cancelUnwaited cancels the transfers no read waits for: ranged fetches
// and the stream. A waiter still leaving cancels its own when it is the last.
func (o *object) cancelUnwaited() {
	o.mu.Lock()
	st := o.st
	for _, f := range o.inflight {
		if f.run.waiters == 0 {
			f.run.cancel()
		}
	}
	o.mu.Unlock()
	if st != nil {
		st.mu.Lock()
		if st.running && st.waiters == 0 && st.cancel != nil {
			st.cancel()
		}
		st.mu.Unlock()
	}
}

// watch derives a read's context that Abandon(src) cancels; done releases it.
func (o *object) watch(ctx context.Context, src Source) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	key := new(int)
	o.mu.Lock()
	if o.cancels == nil {
		o.cancels = map[Source]map[*int]context.CancelFunc{}
	}
	if o.cancels[src] == nil {
		o.cancels[src] = map[*int]context.CancelFunc{}
	}
	o.cancels[src][key] = cancel
	o.mu.Unlock()
	return ctx, func() {
		o.mu.Lock()
		if m := o.cancels[src]; m != nil {
			delete(m, key)
			if len(m) == 0 {
				delete(o.cancels, src)
			}
		}
		o.mu.Unlock()
		cancel()
	}
}

// fetch is one block on its way; waiters take data from it directly, so a
// block evicted at once from a small cache is still delivered.
type fetch struct {
	done    chan struct{}
	data    *block // with a reference for each of the waiters
	err     error
	run     *run
	waiters int // readers waiting for this block (guarded by object.mu)
}

// run is one ranged request of one or more blocks; readers waiting on its
// blocks are counted, and when the last one is interrupted it is cancelled.
type run struct {
	ctx     context.Context
	cancel  context.CancelFunc
	waiters int // guarded by object.mu
}

func (o *object) key(idx int64) blockKey { return blockKey{o.id, idx} }

func noRelease() {}

// readAt reads len(p) bytes at off into p and returns them; with share, a
// range within one block is returned as a slice of the cached block, or of
// a stream's recent block, instead (no copy; neither is modified while
// held), to be released by the caller once read.
func (o *object) readAt(ctx context.Context, src Source, p []byte, off int64, share bool) ([]byte, func(), error) {
	if off >= o.size {
		return p[:0], noRelease, io.EOF
	}
	o.mu.Lock()
	if o.readers == nil {
		o.readers = map[Source]int{}
	}
	o.readers[src]++
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		if o.readers[src]--; o.readers[src] <= 0 {
			delete(o.readers, src)
		}
		o.mu.Unlock()
	}()
	if rest := o.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	bs := o.c.opts.BlockSize
	first, last := off/bs, (off+int64(len(p))-1)/bs

	o.mu.Lock()
	sequential := off == o.lastEnd || (o.lastEnd > 0 && off/bs == (o.lastEnd-1)/bs && off >= o.lastEnd-bs)
	o.lastEnd = off + int64(len(p))
	if o.failedFor(src) == nil {
		switch {
		case off == 0 && o.mode != modeStream && o.size >= streamFromReadAheads*o.c.opts.ReadAhead && o.probe() == nil && o.streamFrom0():
		case o.mode != modeStream || o.far(first):
			o.schedule(first, last)
			if sequential {
				o.schedule(last+1, (off+int64(len(p))+o.c.opts.ReadAhead-1)/bs)
			}
		}
	}
	o.mu.Unlock()

	n := 0
	for n < len(p) {
		pos := off + int64(n)
		idx := pos / bs
		blk, err := o.block(ctx, src, idx)
		if err != nil {
			return p[:n], noRelease, err
		}
		if blk == nil { // spooled: read straight into p
			m := min(int64(len(p)-n), min((idx+1)*bs, o.size)-pos)
			st := o.stream()
			if share && n == 0 && int(m) == len(p) {
				if b, release, ok := st.shareRecent(pos, len(p), bs); ok {
					return b, release, nil
				}
			}
			if st.readRecent(p[n:n+int(m)], pos, bs) {
				n += int(m)
				continue
			}
			if _, err := st.f.ReadAt(p[n:n+int(m)], pos); err != nil {
				return p[:n], noRelease, err
			}
			n += int(m)
			continue
		}
		if b := blk.b[pos-idx*bs:]; share && first == last && len(b) >= len(p) {
			return b[:len(p)], blk.release, nil
		}
		m := copy(p[n:], blk.b[pos-idx*bs:])
		blk.release()
		if m == 0 {
			return p[:n], noRelease, io.ErrUnexpectedEOF
		}
		n += m
	}
	return p, noRelease, nil
}

// block returns block idx with a reference for the caller, waiting for its
// fetch; nil (and no error) when the object streams and the spool holds the
// block, to be read from there.
func (o *object) block(ctx context.Context, src Source, idx int64) (*block, error) {
	if b, ok := o.c.get(o.key(idx)); ok {
		o.c.stats.hits.Add(1)
		return b, nil
	}
	o.mu.Lock()
	if o.mode == modeStream && !o.far(idx) {
		o.mu.Unlock()
		err := o.waitSpool(ctx, src, idx)
		if err != nil && ctx.Err() == nil {
			o.mu.Lock()
			byRange := o.far(idx) // the spool failed meanwhile
			o.mu.Unlock()
			if byRange {
				return o.block(ctx, src, idx)
			}
		}
		return nil, err
	}
	o.c.stats.misses.Add(1)
	f := o.inflight[idx]
	if err := o.failedFor(src); f == nil && err != nil {
		o.mu.Unlock()
		return nil, err
	}
	if f == nil {
		o.schedule(idx, idx)
		f = o.inflight[idx]
	}
	probe := o.probe()
	if f != nil {
		f.run.waiters++
		f.waiters++
	}
	o.mu.Unlock()
	if f == nil {
		if probe == nil { // cached meanwhile
			return o.block(ctx, src, idx)
		}
		// Another block's first request decides the mode: wait for it.
		select {
		case <-probe.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return o.block(ctx, src, idx)
	}
	select {
	case <-f.done:
		o.mu.Lock()
		f.run.waiters--
		o.mu.Unlock()
	case <-ctx.Done():
		o.mu.Lock()
		f.run.waiters--
		select {
		case <-f.done: // delivered meanwhile (perhaps as the spool's stream)
			if f.data != nil {
				f.data.release() // the reference it brought this waiter
			}
		default:
			f.waiters--
			if f.run.waiters == 0 {
				f.run.cancel() // no one else waits for it
			}
		}
		o.mu.Unlock()
		return nil, ctx.Err()
	}
	if f.err == errSwitchedToStream {
		return nil, o.waitSpool(ctx, src, idx)
	}
	if errors.Is(f.err, context.Canceled) && ctx.Err() == nil {
		return o.block(ctx, src, idx) // cancelled for others who left: fetch again
	}
	return f.data, f.err
}

// failMemory is how long a failed transfer's error answers, without a new
// transfer, the reads of blocks not cached through the opens that were
// reading when it failed: the kernel retries a failed read-ahead at once,
// and that retry must not wait a second --timeout. A new open tries again.
const failMemory = 5 * time.Second

// failedFor is the error of a transfer that failed within failMemory while
// src was reading. Called with o.mu held.
func (o *object) failedFor(src Source) error {
	if o.failErr != nil && time.Since(o.failAt) < failMemory && o.failSrcs[src] {
		return o.failErr
	}
	return nil
}

// remember records a failed transfer for the opens reading now. Called with
// o.mu held.
func (o *object) remember(err error) {
	if errors.Is(err, context.Canceled) {
		return // interrupted: the next reader tries again
	}
	o.failErr, o.failAt = err, time.Now()
	o.failSrcs = make(map[Source]bool, len(o.readers))
	for s := range o.readers {
		o.failSrcs[s] = true
	}
}

// streamFrom0 makes the object a stream's (see streamFromReadAheads) and
// starts it, unless no spool file can be made: then it stays as it was
// and says so. Called with o.mu held.
func (o *object) streamFrom0() bool {
	prev, prevSt := o.mode, o.st
	o.rangeOK = o.rangeOK || o.mode == modeRanged
	o.mode = modeStream
	if st := o.startStream(nil, nil, nil); st.f == nil {
		o.mode, o.st = prev, prevSt // blocks by Range, as before
		return false
	}
	return true
}

// far says whether block idx of a streamed object is to be fetched by
// Range: the endpoint takes it and the stream is not about to bring the
// block (nor the spool to hold it, as when a write to it failed). Called
// with o.mu held.
func (o *object) far(idx int64) bool {
	if o.mode != modeStream || !o.rangeOK || o.st == nil {
		return false
	}
	st := o.st
	st.mu.Lock()
	filled, lost := st.filled, st.f == nil || st.spoolFailed
	st.mu.Unlock()
	at := idx * o.c.opts.BlockSize
	return at >= filled+farAhead*o.c.opts.ReadAhead || lost && at >= filled
}

// probe is the fetch under way while the mode is unknown. Called with o.mu held.
func (o *object) probe() *fetch {
	if o.mode != modeUnknown {
		return nil
	}
	for _, f := range o.inflight {
		return f
	}
	return nil
}

// schedule starts ranged fetches for the blocks first..last that are neither
// cached nor on their way, in runs of up to fetchRun blocks per request.
// Called with o.mu held.
func (o *object) schedule(first, last int64) {
	bs := o.c.opts.BlockSize
	if max := (o.size - 1) / bs; last > max {
		last = max
	}
	const fetchRun = 4
	if o.mode == modeUnknown && len(o.inflight) > 0 {
		return // the first answer decides between ranged and stream
	}
	for i := first; i <= last; {
		if o.inflight[i] != nil || o.c.blocks.Contains(o.key(i)) {
			i++
			continue
		}
		j := i
		var fs []*fetch
		r := &run{}
		r.ctx, r.cancel = context.WithCancel(o.c.ctx)
		for j <= last && len(fs) < fetchRun && o.inflight[j] == nil && !o.c.blocks.Contains(o.key(j)) {
			f := &fetch{done: make(chan struct{}), run: r}
			o.inflight[j] = f
			fs = append(fs, f)
			j++
		}
		from := i // i moves on below
		o.c.goTracked(func() { o.fetchRange(from, fs) })
		if o.mode == modeUnknown {
			return // the first answer decides between ranged and stream
		}
		i = j
	}
}

var errSwitchedToStream = &switchErr{}

type switchErr struct{}

func (*switchErr) Error() string { return "endpoint ignores Range: streaming" }

// fetchRange fetches len(fs) blocks from block first in one request. A
// request that loses its stream part-way resumes from the next block while
// each try brings bytes.
func (o *object) fetchRange(first int64, fs []*fetch) {
	c := o.c
	c.sem <- struct{}{}
	defer func() { <-c.sem }()
	r := fs[0].run
	bs := c.opts.BlockSize
	for stuck := 0; len(fs) > 0; {
		off := first * bs
		n := int64(len(fs)) * bs
		if off+n > o.size {
			n = o.size - off
		}
		c.Fetches.Add(1)
		body, ranged, err := o.src.Open(r.ctx, off, n)
		if err == nil && !ranged {
			// The body starts at byte 0: it becomes the spool's stream.
			o.mu.Lock()
			o.mode = modeStream
			o.startStream(r.ctx, r.cancel, body)
			o.finish(first, fs, nil, errSwitchedToStream)
			o.mu.Unlock()
			return
		}
		if err != nil {
			o.fail(first, fs, r, err)
			return
		}
		o.mu.Lock()
		o.rangeOK = true
		if o.mode == modeUnknown {
			o.mode = modeRanged
		}
		o.mu.Unlock()
		got := 0
		for i, f := range fs {
			size := bs
			if rest := o.size - (first+int64(i))*bs; rest < size {
				size = rest
			}
			blk := c.pool.alloc(size)
			if _, err = io.ReadFull(body, blk.b); err != nil {
				blk.release()
				break
			}
			got++
			o.mu.Lock()
			o.finish(first+int64(i), []*fetch{f}, blk, nil) // the waiters' references first:
			c.add(o.key(first+int64(i)), blk)               // an eviction may drop the LRU's at once
			o.mu.Unlock()
		}
		body.Close()
		if err == nil {
			r.cancel()
			return
		}
		first, fs = first+int64(got), fs[got:]
		if got > 0 {
			stuck = 0
		} else {
			stuck++
		}
		if stuck > maxStuck || r.ctx.Err() != nil || !o.transient(err) || sleep(r.ctx, resumeWait(stuck)) != nil {
			o.fail(first, fs, r, err)
			return
		}
	}
}

// fail ends fetches with err, remembered for failMemory unless it was a
// cancellation (the next reader tries again).
func (o *object) fail(first int64, fs []*fetch, r *run, err error) {
	if r.ctx.Err() != nil {
		err = context.Canceled
	}
	r.cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.remember(err)
	o.finish(first, fs, nil, err)
}

// finish completes fetches from block first on; data, if any, is the one
// block of a run of one, given a reference for each of its waiters.
// Called with o.mu held.
func (o *object) finish(first int64, run []*fetch, data *block, err error) {
	for i, f := range run {
		if data != nil {
			data.refs.Add(int32(f.waiters))
		}
		f.data, f.err = data, err
		close(f.done)
		if o.inflight[first+int64(i)] == f {
			delete(o.inflight, first+int64(i))
		}
	}
}

// waitSpool waits until the spool holds block idx (counted a hit if it
// already did). A streamed object's blocks are not kept in the LRU: the
// spool has them, in the kernel's page cache while it is hot, and reading
// them back costs a copy, where a block buffer would cost fresh memory per
// byte of the cold read (on the machines measured, more than the copy).
func (o *object) waitSpool(ctx context.Context, src Source, idx int64) error {
	bs := o.c.opts.BlockSize
	end := min((idx+1)*bs, o.size)
	o.mu.Lock()
	if err := o.failedFor(src); err != nil && (o.st == nil || !o.st.covers(end)) {
		o.mu.Unlock()
		return err
	}
	st := o.startStream(nil, nil, nil)
	o.mu.Unlock()
	st.readUpTo(end)
	if st.covers(end) {
		o.c.stats.hits.Add(1)
		return nil
	}
	o.c.stats.misses.Add(1)
	return st.waitFor(ctx, src, end, func() { o.mu.Lock(); o.startStream(nil, nil, nil); o.mu.Unlock() })
}

// stream is a streamed object's stream.
func (o *object) stream() *stream {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.st
}

// spooled reports the bytes in the spool and whether a transfer is filling it.
func (o *object) spooled() (int64, bool) {
	o.mu.Lock()
	st := o.st
	o.mu.Unlock()
	if st == nil {
		return 0, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.filled, st.running
}

func (o *object) drop() {
	o.mu.Lock()
	st := o.st
	o.mu.Unlock()
	if st != nil {
		st.close()
	}
	_ = os.Remove(o.spool)
}
