package cache

import (
	"sync"
	"sync/atomic"
)

// block is one cached block's bytes. Its buffer goes back to the pool for
// the next fetch once nothing holds it, instead of to the garbage
// collector: a cold read bigger than the cache then reuses memory already
// touched, where fresh memory costs a page fault per 4 KiB (and, on the
// machines measured, the hypervisor's own fault too) and the collector runs
// with the heap at its limit.
//
// References: the LRU holds one while the block is cached, each waiter of
// its fetch gets one when it is delivered, and each reader of a cached
// block one from Cache.get. A reader holds its reference while it copies
// from the bytes, or until the FUSE reply written from them is sent.
type block struct {
	b    []byte
	refs atomic.Int32
	pool *pool
}

// release drops one reference.
func (b *block) release() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		b.pool.put(b.b)
	case n < 0:
		panic("cache: block released more often than referenced")
	}
}

// pool keeps a few full-size block buffers for reuse; short blocks (the
// end of an object) are allocated as they come.
type pool struct {
	size int64

	mu    sync.Mutex
	free  [][]byte
	max   int
	fresh atomic.Int64 // buffers allocated, not reused (for tests)
}

// alloc returns a block of n bytes with one reference (the LRU's, once it
// is added).
func (p *pool) alloc(n int64) *block {
	blk := &block{pool: p}
	blk.refs.Store(1)
	if n == p.size {
		p.mu.Lock()
		if k := len(p.free); k > 0 {
			blk.b = p.free[k-1]
			p.free = p.free[:k-1]
		}
		p.mu.Unlock()
	}
	if blk.b == nil {
		blk.b = newBlock(n)
		p.fresh.Add(1)
	}
	return blk
}

func (p *pool) put(b []byte) {
	if int64(len(b)) != p.size {
		return
	}
	p.mu.Lock()
	if len(p.free) < p.max {
		p.free = append(p.free, b)
	}
	p.mu.Unlock()
}
