package fs

import "testing"

// BenchmarkSettle is what signalFilter adds to every request that is not
// interrupted (the common case, reads included).
func BenchmarkSettle(b *testing.B) {
	cancel := make(chan struct{})
	for b.Loop() {
		_, done := settle(cancel, 1)
		done()
	}
}
