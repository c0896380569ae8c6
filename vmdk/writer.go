package vmdk

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/vmware/govmomi/vmdk"
)

// A monolithic streamOptimized VMDK, as ESXi serves a disk through an export
// lease (VMware "Virtual Disk Format 1.1", stream-optimized sparse extent):
//
//	header | descriptor | padding to overHead
//	for each grain table's worth of grains (512 grains, 32 MiB):
//	    grains that hold data: marker {lba, size} + zlib data, sector padded
//	    GT marker + grain table (sector offsets of those grains)
//	GD marker + grain directory | footer marker + footer | end-of-stream marker
//
// The header's gdOffset is GD_AT_END; the footer (a header copy) has the
// real one. govmomi's vmdk.StreamOptimizedWriter gets this wrong (qemu-img
// rejects its output), so this is our own; it uses govmomi's on-disk types.

const (
	sector      = 512
	grainSecs   = GrainSize / sector // 128
	gtesPerGT   = 512
	gdAtEnd     = ^uint64(0)
	markerEOS   = 0
	markerGT    = 1
	markerGD    = 2
	markerFoot  = 3
	deflateAlgo = 1
)

// GrainSize is the bytes of one grain: 128 sectors, as ESXi writes them.
const GrainSize = 64 << 10

// Extent is a byte range [Off, Off+Len) of a disk.
type Extent struct{ Off, Len int64 }

// Source is what the writer reads: a disk image that knows where its data may be.
type Source interface {
	io.ReaderAt
	Size() int64
	Extents() []Extent // ranges that may hold data; the rest is zero
}

// WriteStreamOptimized writes src as a streamOptimized VMDK whose embedded
// descriptor names the extent file name, and returns the bytes written.
func WriteStreamOptimized(w io.Writer, src Source, name string, cid uint32) (int64, error) {
	sw := &streamWriter{w: bufio.NewWriterSize(w, 1<<20)}
	capSecs := (src.Size() + sector - 1) / sector
	desc := descriptorText(name, capSecs, cid)
	descSecs := (int64(len(desc)) + sector - 1) / sector
	overhead := (1 + descSecs + grainSecs - 1) / grainSecs * grainSecs
	hdr := vmdk.SparseExtentHeaderOnDisk{
		MagicNumber:        vmdk.SparseMagicNumber,
		Version:            3,
		Flags:              vmdk.SparseFlagValidNewlineDetector | vmdk.SparseFlagCompressed | vmdk.SparseFlagEmbeddedLBA,
		Capacity:           uint64(capSecs),
		GrainSize:          grainSecs,
		DescriptorOffset:   1,
		DescriptorSize:     uint64(descSecs),
		NumGTEsPerGT:       gtesPerGT,
		GDOffset:           gdAtEnd,
		Overhead:           uint64(overhead),
		SingleEndLine:      '\n',
		NonEndLine:         ' ',
		DoubleEndLineChar1: '\r',
		DoubleEndLineChar2: '\n',
		CompressAlgorithm:  deflateAlgo,
	}
	sw.put(hdr)
	sw.write([]byte(desc))
	sw.padTo(overhead * sector)

	numGrains := (capSecs + grainSecs - 1) / grainSecs
	gd := make([]uint32, (numGrains+gtesPerGT-1)/gtesPerGT)
	grains := dataGrains(src)
	raw := make([]byte, GrainSize)
	var zbuf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&zbuf, zlib.BestSpeed)
	for i := 0; i < len(grains) && sw.err == nil; {
		t := grains[i] / gtesPerGT
		gt := make([]uint32, gtesPerGT)
		used := false
		for ; i < len(grains) && grains[i]/gtesPerGT == t; i++ {
			g := grains[i]
			clear(raw)
			if _, err := src.ReadAt(raw, g*GrainSize); err != nil && err != io.EOF {
				return sw.n, err
			}
			if isZero(raw) {
				continue // never allocated: reads back as zeros
			}
			zbuf.Reset()
			zw.Reset(&zbuf)
			_, _ = zw.Write(raw)
			_ = zw.Close()
			gt[g%gtesPerGT] = uint32(sw.n / sector)
			sw.put(vmdk.SparseGrainLBAHeaderOnDisk{Lba: uint64(g * grainSecs), CmpSize: uint32(zbuf.Len())})
			sw.write(zbuf.Bytes())
			sw.padTo(sector)
			used = true
		}
		if used {
			sw.marker(gtesPerGT*4/sector, markerGT)
			gd[t] = uint32(sw.n / sector)
			sw.put(gt)
		}
	}
	sw.marker((int64(len(gd))*4+sector-1)/sector, markerGD)
	hdr.GDOffset = uint64(sw.n / sector)
	sw.put(gd)
	sw.padTo(sector)
	sw.marker(1, markerFoot)
	sw.put(hdr)
	sw.marker(0, markerEOS)
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	return sw.n, sw.err
}

// dataGrains are the indexes of the grains that overlap src's extents, in order.
func dataGrains(src Source) []int64 {
	var g []int64
	for _, e := range src.Extents() {
		for b := e.Off / GrainSize; b*GrainSize < e.Off+e.Len; b++ {
			g = append(g, b)
		}
	}
	slices.Sort(g)
	return slices.Compact(g)
}

// descriptorText is the embedded descriptor, kept within one sector as
// ESXi's is (govmomi's vmdk.Seek reads only one).
func descriptorText(name string, capSecs int64, cid uint32) string {
	cyl := min(capSecs/(255*63), 65535)
	return fmt.Sprintf(`# Disk DescriptorFile
version=1
CID=%08x
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW %d SPARSE "%s"

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.virtualHWVersion = "4"
`, cid, capSecs, name, cyl)
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// streamWriter counts what it writes and keeps the first error.
type streamWriter struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (s *streamWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	var n int
	n, s.err = s.w.Write(b)
	s.n += int64(n)
}

func (s *streamWriter) put(v any) {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, v)
	s.write(b.Bytes())
}

// padTo pads with zeros to a multiple of align bytes.
func (s *streamWriter) padTo(align int64) {
	if r := s.n % align; r != 0 {
		s.write(make([]byte, align-r))
	}
}

func (s *streamWriter) marker(secs int64, typ uint32) {
	s.put(vmdk.SparseMetaDataMarkerOnDisk{NumSectors: uint64(secs), SectorType: typ})
}
