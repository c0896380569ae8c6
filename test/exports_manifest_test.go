package test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

// TestExportsManifestChecksums: whatever checksum the server's manifest
// gives (SHA-256 as asked, on vSphere 6.7+; SHA-1 from a server without
// SetManifestChecksumType; SHA-1 from one that takes the call and ignores
// it; and a manifest that is only complete once every disk was sent, so
// that the first disk is checked at the end), the package is govc's byte for
// byte, and a disk that disagrees with the manifest fails the export with
// EIO and a log line naming the check.
func TestExportsManifestChecksums(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	vm := simVM(t, s, exportVM, true)
	addSmallDisk(t, vm, "small", 24<<20)
	want := govcPackage(t, s)
	for _, c := range []struct {
		name string
		mode sim.ManifestChecksums
		late bool
		kind string
	}{
		{"sha256", sim.ChecksumsAsked, false, "SHA256"},
		{"no-method", sim.ChecksumsUnknown, false, "SHA1"},
		{"ignored", sim.ChecksumsIgnored, false, "SHA1"},
		{"late", sim.ChecksumsAsked, true, "SHA256"},
	} {
		s.Exports.SetManifestChecksums(c.mode)
		s.Exports.LateManifest(c.late)
		var args []string
		if c.late {
			args = []string{"--max-transfers", "1"} // disk 0 is sent before disk 1: checked at the end
		}
		m := mount(t, s, args...)
		dst := filepath.Join(t.TempDir(), c.name)
		run(t, "cp", "-r", m.Path("exports", exportVM), dst)
		samePackage(t, c.name, dst, want)
		checkManifest(t, dst, exportVM+".mf")
		m.Unmount(t)

		m = mount(t, s, args...)
		if c.late {
			s.Exports.CorruptDisk(0) // caught by the check at the end
		} else {
			s.Exports.Corrupt(true)
		}
		if _, err := os.Stat(m.Path("exports", exportVM, exportVM+".ovf")); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: stat of a corrupt export: %v, want EIO", c.name, err)
		}
		s.Exports.Corrupt(false)
		if !m.WaitLog("HttpNfcLeaseGetManifest", "with "+c.kind) {
			t.Errorf("%s: the log does not name the %s check:\n%s", c.name, c.kind, m.Log())
		}
		m.Unmount(t)
	}
	s.Exports.LateManifest(false)
	if n := s.Exports.ActiveLeases(); n != 0 {
		t.Errorf("%d leases left active", n)
	}
}
