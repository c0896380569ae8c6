// Package cache holds the read path's caches: an LRU of fixed-size blocks
// (hashicorp/golang-lru/v2) bounded in bytes, read-ahead, and a disk spool
// for endpoints that can only stream from byte 0. It knows neither vSphere
// nor FUSE: it reads from any Source.
package cache

import (
	"context"
	"io"
)

// Source is a remote object's bytes. A Source value stands for one open of
// the object (it must be comparable, e.g. a pointer): a failed transfer's
// error is remembered briefly for the opens that were reading, not for new ones.
type Source interface {
	// ID names the object and its version: cached bytes are keyed under it,
	// so a new version must have a new ID.
	ID() string
	// Size is the object's exact size.
	Size() int64
	// Open returns the bytes from off, n of them (n < 0: to the end). An
	// endpoint that ignores Range answers from byte 0 with ranged = false,
	// whatever off was; the cache then spools that stream.
	//
	// A Source may also have a method Transient(error) bool, saying whether
	// a stream lost with that error may be resumed; without it, any error but
	// ErrChanged is.
	Open(ctx context.Context, off, n int64) (body io.ReadCloser, ranged bool, err error)
}
