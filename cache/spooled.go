package cache

import "os"

// Spooled opens, read-only, the spool of src's object if it holds the whole
// object: a stream that has run to the end. The file is then the object's
// exact bytes on local disk, and can back a FUSE passthrough open. The fd
// stays valid (and its bytes right) even if the spool is dropped later: a
// removed file lives on while open. false if there is no complete spool.
func (c *Cache) Spooled(src Source) (*os.File, bool) {
	id := src.ID()
	c.mu.Lock()
	o := c.objs[id]
	c.mu.Unlock()
	if o == nil || !o.complete() {
		return nil, false
	}
	f, err := os.Open(o.spool)
	if err != nil {
		return nil, false
	}
	// Dropped (and perhaps made again, truncated) between the check and
	// the open: the fd may not be the complete spool. After this check a
	// drop only unlinks the file this fd holds.
	c.mu.Lock()
	same := c.objs[id] == o
	c.mu.Unlock()
	if st, err := f.Stat(); !same || err != nil || st.Size() != o.size || !o.complete() {
		f.Close()
		return nil, false
	}
	return f, true
}

// InMemory reports whether a spool opened by Spooled is (mostly) in the
// page cache: streams write their spools with direct I/O, so after a cold
// read its bytes are in the FUSE inode's pages, not the spool's, and a
// passthrough open would read them from disk again.
func InMemory(f *os.File) bool {
	st, err := f.Stat()
	return err != nil || inMemory(f, st.Size())
}

// complete reports whether the spool holds every byte of the object.
func (o *object) complete() bool {
	o.mu.Lock()
	st := o.st
	stream := o.mode == modeStream
	o.mu.Unlock()
	if !stream || st == nil || st.f == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.filled >= o.size
}

// Ranged reports whether src's object is known to come from an endpoint
// that honours Range: its blocks live in memory only (no spool), so a
// re-read of bytes the LRU let go is fetched again.
func (c *Cache) Ranged(src Source) bool {
	c.mu.Lock()
	o := c.objs[src.ID()]
	c.mu.Unlock()
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mode == modeRanged
}
