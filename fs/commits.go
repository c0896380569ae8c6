package fs

import (
	"context"
	"sync"
	"sync/atomic"
)

// commits tracks the commits of both trees that run on their own (library
// sessions and streamed uploads, guest uploads), so that unmount waits for
// them: the signal handler while Busy (through Writes.Busy), Writes.Close
// until they end; `vspherefs status` counts them. A mount has one: the
// Writes' (embedded there: the library code says w.start),
// which the guest tree shares (FS.commits), or the tree's own without Writes.
type commits struct {
	busy     atomic.Int64   // commits running or queued
	inflight sync.WaitGroup // goroutines that run a commit, or wait for one, on their own
}

// start counts a commit that runs on its own; the returned func ends it.
func (c *commits) start() (end func()) {
	c.busy.Add(1)
	c.inflight.Add(1)
	return func() {
		c.busy.Add(-1)
		c.inflight.Done()
	}
}

// hold counts a goroutine that waits for a commit (or starts one) on its
// own, without counting a commit: wait waits for it all the same.
func (c *commits) hold() (end func()) {
	c.inflight.Add(1)
	return c.inflight.Done
}

// Busy says whether a commit is running or queued.
func (c *commits) Busy() bool { return c != nil && c.busy.Load() > 0 }

// running is how many commits are running or queued.
func (c *commits) running() int64 {
	if c == nil {
		return 0
	}
	return c.busy.Load()
}

// wait waits until nothing start or hold counted runs any more, or ctx is
// done; it says whether they all ended.
func (c *commits) wait(ctx context.Context) bool {
	done := make(chan struct{})
	go func() { c.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
