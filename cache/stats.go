package cache

import (
	"io/fs"
	"path/filepath"
	"sync/atomic"
	"syscall"
)

// stats count what the block cache does, for status and metrics.
type stats struct {
	hits, misses, evictions atomic.Int64
}

func (s *stats) evicted(blockKey, *block) { s.evictions.Add(1) }

// Stats is a snapshot of the cache's use.
type Stats struct {
	Hits, Misses, Evictions int64 // block lookups found, not found; blocks evicted by the LRU
	Bytes, LimitBytes       int64 // memory held by blocks; --cache-size
	SpoolBytes              int64 // disk held by the spool folder (streams, exports)
}

// Stats counts the cache's use (SpoolBytes walks the spool folder).
func (c *Cache) Stats() Stats {
	s := Stats{
		Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(), Evictions: c.stats.evictions.Load(),
		Bytes: int64(c.blocks.Len()) * c.opts.BlockSize, LimitBytes: c.opts.Bytes,
	}
	_ = filepath.WalkDir(c.opts.Dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				s.SpoolBytes += diskUse(fi)
			}
		}
		return nil
	})
	return s
}

// diskUse is what a file occupies on disk: less than its size when sparse
// (a decoded disk image).
func diskUse(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
