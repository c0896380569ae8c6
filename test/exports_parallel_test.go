package test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

// TestExportsMaxTransfers: an export's disks are fetched in parallel, never
// more at once per host than --max-transfers, and the package copied out is
// govc's byte for byte whatever the bound.
func TestExportsMaxTransfers(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	vm := simVM(t, s, exportVM, true)
	for i := 1; i < 5; i++ {
		addSmallDisk(t, vm, fmt.Sprintf("par%d", i), 8<<20)
	}
	want := govcPackage(t, s)

	// Slow enough that every allowed transfer overlaps the others.
	s.Exports.Throttle(4 << 20)
	defer s.Exports.Throttle(0)
	for _, tc := range []struct {
		max  string
		peak int
	}{{"1", 1}, {"3", 3}} {
		t.Run("max"+tc.max, func(t *testing.T) {
			m := mount(t, s, "--max-transfers", tc.max)
			s.Exports.ResetPeak()
			dst := filepath.Join(t.TempDir(), "cp")
			run(t, "cp", "-r", m.Path("exports", exportVM), dst)
			if got := s.Exports.PeakTransfers(); got != tc.peak {
				t.Errorf("--max-transfers %s: %d disk GETs at once, want %d (5 disks)", tc.max, got, tc.peak)
			}
			samePackage(t, "cp", dst, want)
			checkManifest(t, dst, exportVM+".mf")
			m.Unmount(t)
		})
	}
}
