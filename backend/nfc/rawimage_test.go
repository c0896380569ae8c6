package nfc

import "testing"

// TestRoomFor: decoding leaves the greater of a twentieth of the
// filesystem and rawReserve free, or is skipped.
func TestRoomFor(t *testing.T) {
	const mib, gib = int64(1 << 20), int64(1 << 30)
	for _, c := range []struct {
		need, total, free int64
		want              bool
	}{
		{1 * gib, 100 * gib, 10 * gib, true},
		{6 * gib, 100 * gib, 10 * gib, false},  // 4 GiB left, under 5 GiB (a twentieth)
		{5 * gib, 100 * gib, 10 * gib, true},   // exactly a twentieth left
		{100 * mib, 1 * gib, 300 * mib, false}, // 200 MiB left, under rawReserve
		{40 * mib, 1 * gib, 300 * mib, true},
		{0, 1 * gib, 100 * mib, false}, // already under the reserve
	} {
		if got := roomFor(c.need, c.total, c.free); got != c.want {
			t.Errorf("roomFor(need %d MiB, total %d MiB, free %d MiB) = %v, want %v",
				c.need/mib, c.total/mib, c.free/mib, got, c.want)
		}
	}
}
