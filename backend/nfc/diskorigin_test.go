package nfc

import (
	"context"
	"testing"

	"github.com/vspherefs/vspherefs/status"
)

// An export's disk transfers are for their files in the folder the export
// was started from.
func TestDiskOrigin(t *testing.T) {
	for _, c := range []struct{ folder, want string }{
		{"exports/vm", "exports/vm/vm-disk-1.vmdk"},
		{"disks/vm", "disks/vm/disk-1.img"},
		{"", ""},
	} {
		ctx := status.WithOrigin(context.Background(), c.folder)
		if got := status.Origin(diskOrigin(ctx, 1, "vm-disk-1.vmdk")); got != c.want {
			t.Errorf("folder %q: %q, want %q", c.folder, got, c.want)
		}
	}
}
