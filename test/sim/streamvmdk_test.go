package sim

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vmware/govmomi/vmdk"
)

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestStreamOptimizedQemu checks our writer against an independent reader:
// qemu-img must accept the stream and convert it back to the raw image.
func TestStreamOptimizedQemu(t *testing.T) {
	for _, capacity := range []int64{
		10 << 30,        // the simulator's default disk: data far apart, a GT at the end
		30<<20 + 3*1024, // capacity not a multiple of the grain, regions clipped
		64 << 10,        // one grain
	} {
		dir := t.TempDir()
		d := NewRawDisk("vm-1", 2000, capacity)
		p := filepath.Join(dir, "disk.vmdk")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		n, err := WriteStreamOptimized(f, d, "disk.vmdk", 0x1234abcd)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if st, _ := os.Stat(p); st.Size() != n {
			t.Fatalf("wrote %d, file is %d", n, st.Size())
		}
		info := qemuImg(t, "info", "-f", "vmdk", p)
		t.Logf("%d: %d bytes\n%s", capacity, n, info)
		qemuImg(t, "check", "-f", "vmdk", p)
		raw := filepath.Join(dir, "disk.raw")
		qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", p, raw)
		if err := CompareRawFile(raw, d); err != nil {
			t.Fatalf("capacity %d: qemu-img convert output: %v", capacity, err)
		}
		if CompareRawFile(raw, NewRawDisk("vm-2", 2000, capacity)) == nil {
			t.Fatal("another disk's content compares equal")
		}
		// govmomi's own reader agrees on the header and descriptor.
		vi, err := vmdk.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if vi.Capacity != (capacity+511)/512*512 || vi.Descriptor.Type != "streamOptimized" {
			t.Fatalf("vmdk.Stat: capacity %d type %q", vi.Capacity, vi.Descriptor.Type)
		}
	}
}
