package vmdk

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
)

// testDisk is a sparse raw disk for the tests: pseudo-random bytes in its
// extents, zeros elsewhere.
type testDisk struct {
	size int64
	ext  []Extent
	data [][]byte
}

// newTestDisk makes a disk of size bytes with data in a few extents: at the
// start, cut by the end of a grain, in the middle, and at the very end.
func newTestDisk(seed uint64, size int64) *testDisk {
	rng := rand.New(rand.NewPCG(seed, 7))
	d := &testDisk{size: size}
	add := func(off, n int64) {
		off, n = max(off, 0), min(n, size-max(off, 0))
		if n <= 0 || (len(d.ext) > 0 && off < d.ext[len(d.ext)-1].Off+d.ext[len(d.ext)-1].Len) {
			return
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		d.ext, d.data = append(d.ext, Extent{off, n}), append(d.data, b)
	}
	add(0, 3*GrainSize+1000)
	add(size/2-GrainSize/3, 2*GrainSize)
	add(size-5000, 5000)
	return d
}

func (d *testDisk) Size() int64       { return d.size }
func (d *testDisk) Extents() []Extent { return d.ext }

func (d *testDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.size-off))
	clear(p[:n])
	for i, e := range d.ext {
		lo, hi := max(off, e.Off), min(off+int64(n), e.Off+e.Len)
		if lo < hi {
			copy(p[lo-off:hi-off], d.data[i][lo-e.Off:hi-e.Off])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// writeRaw writes d as a sparse raw file.
func (d *testDisk) writeRaw(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for i, e := range d.ext {
		if _, err := f.WriteAt(d.data[i], e.Off); err != nil {
			return err
		}
	}
	return f.Truncate(d.size)
}

// compare checks that r (size bytes) reads as d: its extents byte for byte,
// the zeros between them (in 1 MiB steps, from the holes' edges), and
// random reads across boundaries and past the end.
func (d *testDisk) compare(r io.ReaderAt, size int64) error {
	if size != (d.size+511)/512*512 {
		return fmt.Errorf("size %d, want %d", size, d.size)
	}
	check := func(off int64, n int) error {
		got, want := make([]byte, n), make([]byte, n)
		gn, gerr := r.ReadAt(got, off)
		wn, _ := d.ReadAt(want, off)
		if gn < wn || !bytes.Equal(got[:wn], want[:wn]) {
			return fmt.Errorf("ReadAt(%d, %d): %d bytes (%v) differ from the disk's %d", n, off, gn, gerr, wn)
		}
		return nil
	}
	prev := int64(0)
	for _, e := range d.ext {
		for off := prev; off < e.Off; off += 1 << 20 {
			if err := check(off, int(min(1<<20, e.Off-off))); err != nil {
				return err
			}
			if e.Off-off > 2<<20 { // a long hole: its last MiB, then on
				off = e.Off - 1<<20 - 1<<20
			}
		}
		if err := check(e.Off, int(e.Len)); err != nil {
			return err
		}
		prev = e.Off + e.Len
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		e := d.ext[i%len(d.ext)]
		off := max(0, min(e.Off+rng.Int64N(e.Len+1)-1000, d.size))
		if err := check(off, rng.IntN(3<<17)); err != nil {
			return err
		}
	}
	if n, err := r.ReadAt(make([]byte, 10), size); n != 0 || err != io.EOF {
		return fmt.Errorf("read at the end: %d %v", n, err)
	}
	return nil
}

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// readFileAt is a raw file as an io.ReaderAt with its size.
func readFileAt(t *testing.T, path string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, st.Size()
}
