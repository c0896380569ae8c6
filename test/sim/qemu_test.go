package sim

import (
	"os/exec"
	"testing"
)

// qemuImg runs qemu-img, the independent reader of the disks served.
func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
	return string(out)
}
