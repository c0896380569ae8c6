package cache

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault a range in,
// writable, in one call. Older kernels answer EINVAL, which is harmless.
const madvPopulateWrite = 23

// newBlock allocates a block buffer about to be filled. A block is filled
// from the network at once, so its pages are faulted in by one madvise
// rather than one fault per page in the middle of the copy.
func newBlock(size int64) []byte {
	b := make([]byte, size)
	if size >= 64<<10 {
		_ = syscall.Madvise(b, madvPopulateWrite)
	}
	return b
}

// openDirect opens a spool for direct writes (spoolwrite.go); nil where the
// file system refuses.
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}

// inMemory reports whether most of f's pages are in the page cache
// (cachestat(2), Linux 6.5); true where the kernel cannot tell.
func inMemory(f *os.File, size int64) bool {
	var cs unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{Len: uint64(size)}, &cs, 0); err != nil {
		return true
	}
	pages := (uint64(size) + 4095) / 4096
	return cs.Cache >= pages*9/10
}
