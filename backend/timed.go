package backend

import "time"

// Timed is a value and when it was fetched, for lists trusted for a TTL.
type Timed[T any] struct {
	V  T
	At time.Time
}

// Fresh says whether the value is younger than ttl.
func (t Timed[T]) Fresh(ttl time.Duration) bool { return !t.At.IsZero() && time.Since(t.At) < ttl }
