package nfc

import (
	"strings"
	"testing"
)

// TestPackageNames: the names govc export.ovf gives a package, including its
// rule that a disk already named after the VM keeps its name.
func TestPackageNames(t *testing.T) {
	for _, c := range []struct {
		name  string
		disks int
		want  string
	}{
		{"web01", 2, "web01.ovf web01-disk-0.vmdk web01-disk-1.vmdk web01.mf"},
		{"nodisk", 0, "nodisk.ovf nodisk.mf"},
		{"disk", 1, "disk.ovf disk-0.vmdk disk.mf"},
	} {
		if got := strings.Join(PackageNames(c.name, c.disks), " "); got != c.want {
			t.Errorf("PackageNames(%q, %d) = %s, want %s", c.name, c.disks, got, c.want)
		}
	}
}
