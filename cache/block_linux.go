package cache

import "syscall"

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
