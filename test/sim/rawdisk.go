package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"

	"github.com/vspherefs/vspherefs/vmdk"
)

// BlockSize is the unit in which a RawDisk's content is generated; it is
// also the VMDK grain size, so a block is zero or data as a whole grain is.
const BlockSize = vmdk.GrainSize

// Extent is a byte range [Off, Off+Len) of a disk (the codec's).
type Extent = vmdk.Extent

// RawDisk is the deterministic raw content of one simulated virtual disk:
// exactly its capacity, zero except for a few tens of MiB of data in
// regions that look like a real disk (a boot sector, incompressible data
// with zero grains inside it, compressible text, a backup table at the very
// end). Nothing is stored: any range is generated on demand from a seed, so
// a 10 GiB disk costs nothing until read.
type RawDisk struct {
	capacity int64
	seed     [32]byte
	label    string // goes into the text region, to tell disks apart by eye
	regions  []region
}

type regionKind int

const (
	kindRandom regionKind = iota // incompressible, every 7th block zero
	kindText                     // compressible lines of text
)

type region struct {
	Extent
	kind regionKind
}

// NewRawDisk is the content of disk key of the VM with managed object id vm.
func NewRawDisk(vm string, key int32, capacity int64) *RawDisk {
	label := fmt.Sprintf("%s/%d", vm, key)
	d := &RawDisk{capacity: capacity, label: label, seed: sha256.Sum256([]byte("vspherefs disk " + label))}
	add := func(off, end int64, k regionKind) {
		if n := len(d.regions); n > 0 {
			off = max(off, d.regions[n-1].Off+d.regions[n-1].Len)
		}
		end = min(end, capacity)
		if off < end {
			d.regions = append(d.regions, region{Extent{Off: off, Len: end - off}, k})
		}
	}
	const mib = 1 << 20
	add(0, 512, kindText)                     // boot sector: data in a partial grain
	add(1*mib, 9*mib, kindRandom)             // 8 MiB that does not compress, with holes
	add(12*mib, 28*mib, kindText)             // 16 MiB that does
	add(capacity-17408, capacity, kindRandom) // 34 sectors at the end, like a backup GPT
	return d
}

// Size is the disk's capacity in bytes.
func (d *RawDisk) Size() int64 { return d.capacity }

// Extents are the ranges that may hold data; everything else is zero.
func (d *RawDisk) Extents() []Extent {
	e := make([]Extent, len(d.regions))
	for i, r := range d.regions {
		e[i] = r.Extent
	}
	return e
}

// ReadAt reads the disk's content, as an io.ReaderAt.
func (d *RawDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("rawdisk: negative offset")
	}
	if off >= d.capacity {
		return 0, io.EOF
	}
	n := len(p)
	var err error
	if int64(n) > d.capacity-off {
		n, err = int(d.capacity-off), io.EOF
	}
	p = p[:n]
	clear(p)
	var block []byte
	for _, r := range d.regions {
		lo, hi := max(off, r.Off), min(off+int64(n), r.Off+r.Len)
		for lo < hi {
			b := lo / BlockSize
			end := min(hi, (b+1)*BlockSize)
			if block == nil {
				block = make([]byte, BlockSize)
			}
			d.block(r.kind, b, block)
			copy(p[lo-off:end-off], block[lo-b*BlockSize:end-b*BlockSize])
			lo = end
		}
	}
	return n, err
}

// Reader reads the whole disk from the start.
func (d *RawDisk) Reader() io.Reader { return io.NewSectionReader(d, 0, d.capacity) }

// block fills buf with block b as it would be if region kind k covered it.
func (d *RawDisk) block(k regionKind, b int64, buf []byte) {
	switch k {
	case kindRandom:
		if b%7 == 3 {
			clear(buf)
			return
		}
		seed := d.seed
		binary.LittleEndian.PutUint64(seed[:8], binary.LittleEndian.Uint64(seed[:8])^uint64(b))
		_, _ = rand.NewChaCha8(seed).Read(buf)
	case kindText:
		line := 0
		out := buf[:0]
		for len(out) < len(buf) {
			out = append(out, "vspherefs simulated disk "...)
			out = append(out, d.label...)
			out = append(out, " block "...)
			out = strconv.AppendInt(out, b, 10)
			out = append(out, " line "...)
			out = strconv.AppendInt(out, int64(line), 10)
			out = append(out, '\n')
			line++
		}
		copy(buf, out) // the last line is cut at the block's end
	}
}

// WriteSparse writes the disk to a sparse file at path (holes where it is
// zero), for tools such as qemu-img to compare against.
func (d *RawDisk) WriteSparse(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(d.capacity); err != nil {
		return err
	}
	for _, e := range d.Extents() {
		if _, err := io.Copy(io.NewOffsetWriter(f, e.Off), io.NewSectionReader(d, e.Off, e.Len)); err != nil {
			return err
		}
	}
	return f.Close()
}
