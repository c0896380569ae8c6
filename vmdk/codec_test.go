package vmdk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	gvmdk "github.com/vmware/govmomi/vmdk"
)

// capacities: a disk with its data far apart (a grain table at the end),
// one whose capacity is no multiple of the grain, and a one-grain disk.
var capacities = []int64{10 << 30, 30<<20 + 3*1024, 64 << 10}

// What the encoder writes, qemu-img (an independent decoder) accepts and
// converts back to exactly the input; govmomi's reader agrees on the header.
func TestWriterQemuDecodes(t *testing.T) {
	for i, capacity := range capacities {
		dir := t.TempDir()
		d := newTestDisk(uint64(i), capacity)
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
		qemuImg(t, "check", "-f", "vmdk", p)
		raw := filepath.Join(dir, "disk.raw")
		qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", p, raw)
		r, size := readFileAt(t, raw)
		if err := d.compare(r, size); err != nil {
			t.Fatalf("capacity %d: qemu-img's raw image: %v", capacity, err)
		}
		if newTestDisk(uint64(i)+100, capacity).compare(r, size) == nil {
			t.Fatal("another disk's content compares equal")
		}
		vi, err := gvmdk.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if vi.Capacity != (capacity+511)/512*512 || vi.Descriptor.Type != "streamOptimized" {
			t.Fatalf("vmdk.Stat: capacity %d type %q", vi.Capacity, vi.Descriptor.Type)
		}
	}
}

// The decoder reads what qemu-img writes as streamOptimized.
func TestReaderDecodesQemu(t *testing.T) {
	dir := t.TempDir()
	d := newTestDisk(9, 40<<20)
	raw := filepath.Join(dir, "disk.raw")
	if err := d.writeRaw(raw); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "disk.vmdk")
	qemuImg(t, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, p)
	img, f, err := OpenDiskImage(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := d.compare(img, img.Size()); err != nil {
		t.Fatal(err)
	}
}

// Encoder and decoder round trip, and the decoder reports the grains it has.
func TestRoundTrip(t *testing.T) {
	for i, capacity := range capacities {
		d := newTestDisk(uint64(i), capacity)
		var b bytes.Buffer
		if _, err := WriteStreamOptimized(&b, d, "x.vmdk", 1); err != nil {
			t.Fatal(err)
		}
		img, err := OpenStreamImage(bytes.NewReader(b.Bytes()), int64(b.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.compare(img, img.Size()); err != nil {
			t.Fatalf("capacity %d: %v", capacity, err)
		}
		for _, e := range d.ext { // every byte of data is in an allocated extent
			covered := false
			for _, a := range img.Allocated() {
				covered = covered || (a[0] <= e.Off && e.Off+e.Len <= a[0]+a[1])
			}
			if !covered {
				t.Fatalf("capacity %d: data at %+v not in Allocated %v", capacity, e, img.Allocated())
			}
		}
	}
}

// A damaged stream is refused, and a damaged grain is an error on read, not
// wrong data.
func TestReaderDamaged(t *testing.T) {
	d := newTestDisk(3, 20<<20)
	var b bytes.Buffer
	if _, err := WriteStreamOptimized(&b, d, "x.vmdk", 1); err != nil {
		t.Fatal(err)
	}
	good := b.Bytes()
	open := func(p []byte) (*StreamImage, error) { return OpenStreamImage(bytes.NewReader(p), int64(len(p))) }
	bad := bytes.Clone(good)
	bad[0] = 'X'
	if _, err := open(bad); err == nil {
		t.Fatal("bad magic accepted")
	}
	if _, err := open(good[:len(good)-700]); err == nil {
		t.Fatal("truncated stream accepted")
	}
	bad = bytes.Clone(good)
	bad[65536+12+20] ^= 0xff // inside the first grain's compressed data
	img, err := open(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.ReadAt(make([]byte, 512), 0); err == nil {
		t.Fatal("damaged grain read without error")
	}
}
