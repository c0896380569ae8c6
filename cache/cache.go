package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Options size the cache.
type Options struct {
	Bytes     int64  // memory for blocks (--cache-size)
	BlockSize int64  // bytes per block; 0 means 1 MiB
	Dir       string // spool directory (under --cache-dir)
	// ReadAhead is how far ahead of a sequential reader blocks are fetched;
	// 0 means 8 blocks, and it is capped at a quarter of the cache.
	ReadAhead int64
	// SpoolBytes bounds the disk the spools of idle objects may keep; 0
	// means four times Bytes, at least 2 GiB. Spools in use are never dropped.
	SpoolBytes int64
}

// maxIdleObjects bounds how many objects without a reader are remembered.
const maxIdleObjects = 4096

type blockKey struct {
	id  string
	idx int64
}

// Cache is shared by every open file of a mount.
//
// Lock order (none is held across network I/O; a goroutine takes a lock
// only while holding none below it): Cache.mu, object.mu, stream.mu; then
// Cache.bmu, the LRU's own lock (its eviction callback runs under it),
// pool.mu. tracked.mu and recent.mu (a stream's in-memory block) are
// leaves.
type Cache struct {
	opts Options
	// bmu makes a lookup and its reference one step, so that no eviction
	// recycles a block between them (block.go).
	bmu    sync.Mutex
	blocks *lru.Cache[blockKey, *block]
	pool   *pool
	ctx    context.Context // background fetches outlive the reader that started them
	cancel context.CancelFunc

	sem     chan struct{} // bounds parallel ranged fetches
	running tracked       // fetch and stream goroutines, waited for by Close
	mu      sync.Mutex
	objs    map[string]*object
	tick    uint64    // use counter, for dropping the least recently used spools
	trimmed time.Time // last trim

	// Fetches counts transfers started (ranged GETs and streams), for tests and benchmarks.
	Fetches atomic.Int64

	stats *stats // hits, misses, evictions (stats.go)
}

// New makes a cache; Close removes its spool files.
func New(opts Options) (*Cache, error) {
	if opts.BlockSize <= 0 {
		opts.BlockSize = 1 << 20
	}
	n := int(opts.Bytes / opts.BlockSize)
	if n < 4 {
		n = 4
	}
	if opts.ReadAhead <= 0 {
		opts.ReadAhead = 8 * opts.BlockSize
	}
	if opts.SpoolBytes <= 0 {
		opts.SpoolBytes = max(4*opts.Bytes, 2<<30)
	}
	if max := int64(n) * opts.BlockSize / 4; opts.ReadAhead > max {
		opts.ReadAhead = max
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "vspherefs-spool-")
		if err != nil {
			return nil, err
		}
		opts.Dir = d
	} else if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	st := new(stats)
	blocks, err := lru.NewWithEvict(n, func(k blockKey, b *block) {
		st.evicted(k, b)
		b.release() // the LRU's reference
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Enough free buffers for the fetches under way between an eviction and
	// the next fetch; more would only hold memory past --cache-size.
	p := &pool{size: opts.BlockSize, max: min(32, max(n/8, 4))}
	return &Cache{opts: opts, blocks: blocks, pool: p, ctx: ctx, cancel: cancel, sem: make(chan struct{}, 4), objs: map[string]*object{}, stats: st}, nil
}

// get returns the cached block k with a reference for the caller.
func (c *Cache) get(k blockKey) (*block, bool) {
	c.bmu.Lock()
	defer c.bmu.Unlock()
	b, ok := c.blocks.Get(k)
	if ok {
		b.refs.Add(1)
	}
	return b, ok
}

// add caches b, which brings the LRU's reference.
func (c *Cache) add(k blockKey, b *block) {
	c.bmu.Lock()
	defer c.bmu.Unlock()
	c.blocks.Add(k, b)
}

// closeWait bounds how long Close waits for cancelled transfers to end: a
// transfer ends at its context's cancellation, so only a bug outlasts it.
const closeWait = 10 * time.Second

// goTracked runs f in a goroutine Close waits for.
func (c *Cache) goTracked(f func()) {
	c.running.add()
	go func() {
		defer c.running.done()
		f()
	}()
}

// tracked counts goroutines. Unlike a WaitGroup it may gain one while
// somebody waits (a reader restarting a stream as Close cancels it: that
// one ends at once, its context being the cancelled cache's).
type tracked struct {
	mu      sync.Mutex
	n       int
	waiters []chan struct{}
}

func (t *tracked) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracked) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n--; t.n == 0 {
		for _, w := range t.waiters {
			close(w)
		}
		t.waiters = nil
	}
}

// idle is closed once no goroutine runs.
func (t *tracked) idle() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := make(chan struct{})
	if t.n == 0 {
		close(ch)
	} else {
		t.waiters = append(t.waiters, ch)
	}
	return ch
}

// Close stops background transfers, waits for them to end (at most
// closeWait: unmount must finish), and removes the spool files.
func (c *Cache) Close() error {
	c.cancel()
	var err error
	select {
	case <-c.running.idle():
	case <-time.After(closeWait):
		err = fmt.Errorf("cache: transfers still running %v after they were cancelled", closeWait)
	}
	c.mu.Lock()
	objs := c.objs
	c.objs = map[string]*object{}
	c.mu.Unlock()
	for _, o := range objs {
		o.drop()
	}
	return err
}

// BlockSize is the cache's block size.
func (c *Cache) BlockSize() int64 { return c.opts.BlockSize }

// Forget drops what is cached for an object ID (its blocks age out of the LRU).
func (c *Cache) Forget(id string) {
	c.mu.Lock()
	o := c.objs[id]
	delete(c.objs, id)
	c.mu.Unlock()
	if o != nil {
		o.drop()
	}
}

// acquire returns the cache's state for a Source ID, counted as in use until
// release, so that its spool is not dropped under a reader.
func (c *Cache) acquire(src Source) *object {
	id := src.ID()
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.object(id, src)
	o.active++
	c.tick++
	o.used = c.tick
	return o
}

func (c *Cache) release(o *object) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o.active--
	// trim looks at every object: not on each read, at most every 100 ms.
	if now := time.Now(); now.Sub(c.trimmed) >= 100*time.Millisecond {
		c.trimmed = now
		c.trim()
	}
}

// trim drops the least recently used idle objects while their spools take
// more than SpoolBytes, or there are too many of them. A dropped object that
// is read again starts a new transfer. Called with c.mu held.
func (c *Cache) trim() {
	var total int64
	idle := make([]*object, 0, len(c.objs))
	for _, o := range c.objs {
		n, running := o.spooled()
		total += n
		if o.active == 0 && !running {
			idle = append(idle, o)
			if st := o.stream(); st != nil {
				st.dropRecent()
			}
		}
	}
	if total <= c.opts.SpoolBytes && len(idle) <= maxIdleObjects {
		return
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].used < idle[j].used })
	for i, o := range idle {
		if total <= c.opts.SpoolBytes && len(idle)-i <= maxIdleObjects {
			break
		}
		n, _ := o.spooled()
		total -= n
		delete(c.objs, o.id)
		o.drop()
	}
}

// object returns the state for id, creating it. Called with c.mu held.
func (c *Cache) object(id string, src Source) *object {
	o, ok := c.objs[id]
	if !ok {
		sum := sha256.Sum256([]byte(id))
		o = &object{
			c:        c,
			src:      src,
			id:       id,
			size:     src.Size(),
			spool:    filepath.Join(c.opts.Dir, hex.EncodeToString(sum[:12])),
			inflight: map[int64]*fetch{},
		}
		c.objs[id] = o
	}
	return o
}

// ReadAt reads from src through the cache. It returns io.EOF only when off is
// at or past the end; a short read means the end of the object.
func (c *Cache) ReadAt(ctx context.Context, src Source, p []byte, off int64) (int, error) {
	o := c.acquire(src)
	defer c.release(o)
	ctx, done := o.watch(ctx, src)
	defer done()
	b, _, err := o.readAt(ctx, src, p, off, false)
	return len(b), err
}

// ReadShared is ReadAt that may return, instead of p filled, a slice of a
// cached block (or of a stream's recent block) holding the bytes asked for
// (when they lie in one block), to be read and never modified: a FUSE reply
// from it copies nothing more. release must be called once the bytes are no
// longer read (after the reply is sent): the block's buffer is then reused.
func (c *Cache) ReadShared(ctx context.Context, src Source, p []byte, off int64) (b []byte, release func(), err error) {
	o := c.acquire(src)
	defer c.release(o)
	ctx, done := o.watch(ctx, src)
	defer done()
	return o.readAt(ctx, src, p, off, true)
}

// Abandon is close(2) of src (one open): its reads that are waiting now end
// as if they were interrupted (the kernel does not interrupt read-ahead),
// and the object's transfers that no read waits for any more are cancelled
// (a later read resumes them). Later reads of src are not affected.
func (c *Cache) Abandon(src Source) {
	c.mu.Lock()
	o := c.objs[src.ID()]
	c.mu.Unlock()
	if o == nil {
		return
	}
	o.mu.Lock()
	cancels := o.cancels[src]
	delete(o.cancels, src)
	o.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
	o.cancelUnwaited()
}

// Busy says whether Abandon(src) may have anything to end: a read of src
// waiting, or a transfer of its object under way. Callers use it to skip
// costlier checks (fs: who is closing) when a close has nothing to end.
func (c *Cache) Busy(src Source) bool {
	c.mu.Lock()
	o := c.objs[src.ID()]
	c.mu.Unlock()
	if o == nil {
		return false
	}
	o.mu.Lock()
	busy, st := len(o.cancels[src]) > 0 || len(o.inflight) > 0, o.st
	o.mu.Unlock()
	if !busy && st != nil {
		st.mu.Lock()
		busy = st.running
		st.mu.Unlock()
	}
	return busy
}

func (c *Cache) String() string {
	return fmt.Sprintf("cache(%d blocks of %d)", c.blocks.Len(), c.opts.BlockSize)
}
