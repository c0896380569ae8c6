package backend

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

// checkImage compares img with d everywhere (cheaply: on both sides' data)
// and at random offsets and lengths, across grains and past the end.
func checkImage(t *testing.T, img *StreamImage, d *sim.RawDisk) {
	t.Helper()
	if err := sim.CompareRaw(img, img.Size(), extents(img), d); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ext := d.Extents()
	for i := range 300 {
		e := ext[i%len(ext)]
		off := e.Off + rng.Int64N(e.Len+1) - 1000
		off = max(0, min(off, d.Size()))
		n := rng.IntN(3 << 17)
		got := make([]byte, n)
		want := make([]byte, n)
		gn, gerr := img.ReadAt(got, off)
		wn, werr := d.ReadAt(want, off)
		if gn != wn || (gerr == io.EOF) != (werr == io.EOF) || !bytes.Equal(got[:gn], want[:wn]) {
			t.Fatalf("ReadAt(%d, %d): %d %v, want %d %v", n, off, gn, gerr, wn, werr)
		}
	}
	if n, err := img.ReadAt(make([]byte, 10), img.Size()); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d %v", n, err)
	}
}

func TestStreamImageOurWriter(t *testing.T) {
	for _, capacity := range []int64{10 << 30, 30<<20 + 3*1024, 64 << 10} {
		d := sim.NewRawDisk("vm-9", 2001, capacity)
		var b bytes.Buffer
		if _, err := sim.WriteStreamOptimized(&b, d, "x.vmdk", 1); err != nil {
			t.Fatal(err)
		}
		img, err := OpenStreamImage(bytes.NewReader(b.Bytes()), int64(b.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if img.Size() != (capacity+511)/512*512 {
			t.Fatalf("size %d", img.Size())
		}
		checkImage(t, img, d)
	}
}

// TestStreamImageQemu decodes a stream written by another implementation.
func TestStreamImageQemu(t *testing.T) {
	dir := t.TempDir()
	d := sim.NewRawDisk("vm-9", 2002, 40<<20)
	raw := filepath.Join(dir, "disk.raw")
	if err := d.WriteSparse(raw); err != nil {
		t.Fatal(err)
	}
	vmdkPath := filepath.Join(dir, "disk.vmdk")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdkPath).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	img, f, err := OpenDiskImage(vmdkPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkImage(t, img, d)
}

func TestStreamImageDamaged(t *testing.T) {
	d := sim.NewRawDisk("vm-9", 2003, 20<<20)
	var b bytes.Buffer
	if _, err := sim.WriteStreamOptimized(&b, d, "x.vmdk", 1); err != nil {
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
	// A damaged grain is an error on read, not wrong data.
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
