package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// CompareRaw reports whether the image r of the given size has exactly d's
// content. dataOf lists the ranges where r may hold non-zero bytes (for a
// sparse file, its data extents); r is compared with d there and on d's
// extents, and assumed zero elsewhere. This keeps a 10 GiB comparison cheap.
func CompareRaw(r io.ReaderAt, size int64, dataOf []Extent, d *RawDisk) error {
	if size != d.Size() {
		return fmt.Errorf("size %d, want %d", size, d.Size())
	}
	a := make([]byte, 1<<20)
	b := make([]byte, 1<<20)
	for _, e := range append(dataOf, d.Extents()...) {
		for off := e.Off; off < e.Off+e.Len; {
			n := int(min(int64(len(a)), e.Off+e.Len-off))
			if _, err := r.ReadAt(a[:n], off); err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) {
				return fmt.Errorf("read at %d: %w", off, err)
			}
			_, _ = d.ReadAt(b[:n], off)
			if !bytes.Equal(a[:n], b[:n]) {
				for i := range n {
					if a[i] != b[i] {
						return fmt.Errorf("differs at byte %d", off+int64(i))
					}
				}
			}
			off += int64(n)
		}
	}
	return nil
}

// CompareRawFile reports whether the (sparse) file at path is exactly d.
func CompareRawFile(path string, d *RawDisk) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	ext, err := dataExtents(f, st.Size())
	if err != nil {
		return err
	}
	return CompareRaw(f, st.Size(), ext, d)
}

// dataExtents lists a file's data ranges with SEEK_DATA/SEEK_HOLE.
func dataExtents(f *os.File, size int64) ([]Extent, error) {
	const seekData, seekHole = 3, 4
	var ext []Extent
	for off := int64(0); off < size; {
		start, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break
		}
		if err != nil {
			return nil, err
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			return nil, err
		}
		ext = append(ext, Extent{Off: start, Len: end - start})
		off = end
	}
	return ext, nil
}
