// Package vmdk is the monolithic streamOptimized VMDK codec: the decoder
// the mount serves disks/ with (reader.go) and the encoder the simulator
// serves exports with (writer.go), on govmomi's on-disk types. qemu-img is
// the independent check of both (codec_test.go).
package vmdk

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/vmware/govmomi/vmdk"
)

// StreamImage is the raw disk image inside a monolithic streamOptimized VMDK
// (what an export lease serves): exactly the disk's capacity, zeros where
// the stream has no grain, readable at any offset. It reads the grain
// directory and tables once, then inflates grains on demand, keeping the
// last few in memory for sequential readers.
type StreamImage struct {
	r         io.ReaderAt
	capacity  int64
	grainSize int64
	perGT     int64
	gts       [][]uint32 // grain tables by directory index; nil: no grains there
	zeroGTE   bool       // a table entry of 1 means a zero grain

	mu    sync.Mutex
	cache [8]cachedGrain // round-robin
	next  int
}

type cachedGrain struct {
	index int64
	data  []byte // nil: empty slot
}

const (
	sectorSize     = 512
	vmdkGDAtEnd    = ^uint64(0)
	flagZeroGrain  = 1 << 2
	markerFooter   = 3
	compressDeflat = 1
)

// OpenStreamImage reads the header, footer, grain directory and tables of
// the streamOptimized VMDK r of size bytes.
func OpenStreamImage(r io.ReaderAt, size int64) (*StreamImage, error) {
	hdr, err := readHeader(r, 0)
	if err != nil {
		return nil, err
	}
	const need = vmdk.SparseFlagCompressed | vmdk.SparseFlagEmbeddedLBA
	if hdr.Flags&need != need || hdr.CompressAlgorithm != compressDeflat {
		return nil, fmt.Errorf("vmdk: not streamOptimized (flags %#x, compression %d)", hdr.Flags, hdr.CompressAlgorithm)
	}
	if hdr.GDOffset == vmdkGDAtEnd {
		// The real header is the footer: marker, footer, end-of-stream marker.
		if size < 3*sectorSize {
			return nil, fmt.Errorf("vmdk: too short for a footer")
		}
		var m vmdk.SparseMetaDataMarkerOnDisk
		if err := readStruct(r, size-3*sectorSize, &m); err != nil {
			return nil, err
		}
		if m.SectorType != markerFooter {
			return nil, fmt.Errorf("vmdk: no footer marker")
		}
		if hdr, err = readHeader(r, size-2*sectorSize); err != nil {
			return nil, fmt.Errorf("vmdk footer: %w", err)
		}
	}
	if hdr.GrainSize == 0 || hdr.GrainSize&(hdr.GrainSize-1) != 0 || hdr.GrainSize > 1<<16 || hdr.NumGTEsPerGT == 0 {
		return nil, fmt.Errorf("vmdk: bad geometry (grain %d sectors, %d entries per table)", hdr.GrainSize, hdr.NumGTEsPerGT)
	}
	img := &StreamImage{
		r:         r,
		capacity:  int64(hdr.Capacity) * sectorSize,
		grainSize: int64(hdr.GrainSize) * sectorSize,
		perGT:     int64(hdr.NumGTEsPerGT),
		zeroGTE:   hdr.Flags&flagZeroGrain != 0,
	}
	grains := (img.capacity + img.grainSize - 1) / img.grainSize
	gd := make([]uint32, (grains+img.perGT-1)/img.perGT)
	if err := readStruct(r, int64(hdr.GDOffset)*sectorSize, gd); err != nil {
		return nil, fmt.Errorf("vmdk grain directory: %w", err)
	}
	img.gts = make([][]uint32, len(gd))
	for i, off := range gd {
		if off == 0 {
			continue
		}
		img.gts[i] = make([]uint32, img.perGT)
		if err := readStruct(r, int64(off)*sectorSize, img.gts[i]); err != nil {
			return nil, fmt.Errorf("vmdk grain table %d: %w", i, err)
		}
	}
	return img, nil
}

func readHeader(r io.ReaderAt, off int64) (vmdk.SparseExtentHeaderOnDisk, error) {
	var h vmdk.SparseExtentHeaderOnDisk
	if err := readStruct(r, off, &h); err != nil {
		return h, err
	}
	if h.MagicNumber != vmdk.SparseMagicNumber {
		return h, fmt.Errorf("vmdk: bad magic %#x", h.MagicNumber)
	}
	return h, nil
}

func readStruct(r io.ReaderAt, off int64, v any) error {
	b := make([]byte, binary.Size(v))
	if _, err := r.ReadAt(b, off); err != nil {
		return err
	}
	return binary.Read(bytes.NewReader(b), binary.LittleEndian, v)
}

// Size is the disk's capacity in bytes.
func (img *StreamImage) Size() int64 { return img.capacity }

// ReadAt reads the raw image; past the capacity it returns io.EOF.
func (img *StreamImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vmdk: negative offset")
	}
	if off >= img.capacity {
		return 0, io.EOF
	}
	var err error
	if rest := img.capacity - off; int64(len(p)) > rest {
		p, err = p[:rest], io.EOF
	}
	n := 0
	for n < len(p) {
		g := (off + int64(n)) / img.grainSize
		in := (off + int64(n)) - g*img.grainSize
		data, gerr := img.grain(g)
		if gerr != nil {
			return n, gerr
		}
		var c int
		if data == nil {
			c = min(len(p)-n, int(img.grainSize-in))
			clear(p[n : n+c])
		} else {
			c = copy(p[n:], data[in:])
		}
		n += c
	}
	return n, err
}

// Allocated lists the byte ranges that have grains (everything else reads
// as zeros), merged, in order.
func (img *StreamImage) Allocated() [][2]int64 {
	var ext [][2]int64
	for t, gt := range img.gts {
		for i, off := range gt {
			if off == 0 || (off == 1 && img.zeroGTE) {
				continue
			}
			start := (int64(t)*img.perGT + int64(i)) * img.grainSize
			end := min(start+img.grainSize, img.capacity)
			if n := len(ext); n > 0 && ext[n-1][1] == start {
				ext[n-1][1] = end
			} else {
				ext = append(ext, [2]int64{start, end})
			}
		}
	}
	return ext
}

// grain returns grain g inflated, or nil if the stream has none (zeros).
func (img *StreamImage) grain(g int64) ([]byte, error) {
	gt := img.gts[g/img.perGT]
	if gt == nil {
		return nil, nil
	}
	sec := gt[g%img.perGT]
	if sec == 0 || (sec == 1 && img.zeroGTE) {
		return nil, nil
	}
	img.mu.Lock()
	for _, c := range img.cache {
		if c.data != nil && c.index == g {
			img.mu.Unlock()
			return c.data, nil
		}
	}
	img.mu.Unlock()

	data, err := img.inflate(g, int64(sec)*sectorSize)
	if err != nil {
		return nil, err
	}
	img.mu.Lock()
	img.cache[img.next] = cachedGrain{g, data}
	img.next = (img.next + 1) % len(img.cache)
	img.mu.Unlock()
	return data, nil
}

// inflate reads the grain marker at off ({lba, size} then zlib data) and
// inflates the grain, checking that it is the grain it should be.
func (img *StreamImage) inflate(g, off int64) ([]byte, error) {
	var m vmdk.SparseGrainLBAHeaderOnDisk
	if err := readStruct(img.r, off, &m); err != nil {
		return nil, fmt.Errorf("vmdk grain %d: %w", g, err)
	}
	if want := uint64(g * img.grainSize / sectorSize); m.Lba != want {
		return nil, fmt.Errorf("vmdk grain %d: marker says sector %d, want %d", g, m.Lba, want)
	}
	if int64(m.CmpSize) > 2*img.grainSize+1024 {
		return nil, fmt.Errorf("vmdk grain %d: compressed size %d", g, m.CmpSize)
	}
	zr, err := zlib.NewReader(io.NewSectionReader(img.r, off+int64(binary.Size(m)), int64(m.CmpSize)))
	if err != nil {
		return nil, fmt.Errorf("vmdk grain %d: %w", g, err)
	}
	data := make([]byte, img.grainSize)
	n, err := io.ReadFull(zr, data)
	if err == io.ErrUnexpectedEOF && (g+1)*img.grainSize > img.capacity && int64(n) >= img.capacity-g*img.grainSize {
		err = nil // a last grain cut at the capacity
	}
	if err == nil {
		// A full grain: read on to the stream's end, where zlib checks its
		// Adler-32, so that damaged stored (incompressible) data is an error.
		if n, rerr := zr.Read(make([]byte, 1)); n != 0 || rerr != io.EOF {
			err = cmpErr(n, rerr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("vmdk grain %d: %w", g, err)
	}
	return data, nil
}

// cmpErr says what is wrong after a grain's bytes: more data, or the error.
func cmpErr(n int, err error) error {
	if n != 0 {
		return fmt.Errorf("more than a grain of data")
	}
	return err
}

// OpenImageFile checks that a spooled disk decodes, and gives its raw image.
func OpenImageFile(path string) (*StreamImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	img, err := OpenStreamImage(f, st.Size())
	if err != nil {
		return nil, err
	}
	img.r = nil // the file closes: this image is only for its size
	return img, nil
}

// OpenDiskImage opens a spooled .vmdk as its raw image; close the file when done.
func OpenDiskImage(path string) (*StreamImage, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	img, err := OpenStreamImage(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return img, f, nil
}
