package sim

import (
	"context"
	"time"
)

// SetRate caps whole-body library GETs (the default, Range off) at
// bytesPerSecond, for tests that watch a transfer in flight; 0 lifts the cap.
func (d *LibraryData) SetRate(bytesPerSecond int64) { d.rate.Store(bytesPerSecond) }

// pace sleeps as long as n bytes take at the rate set; false if the request ended.
func (d *LibraryData) pace(ctx context.Context, n int) bool {
	r := d.rate.Load()
	if r <= 0 {
		return true
	}
	select {
	case <-time.After(time.Duration(int64(n) * int64(time.Second) / r)):
		return true
	case <-ctx.Done():
		return false
	}
}
