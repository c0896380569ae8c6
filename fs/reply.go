package fs

import "github.com/hanwen/go-fuse/v2/fuse"

// sliceReply is a read's reply: go-fuse writes it with one writev from b
// (its Slices method), and calls Done once it is sent.
type sliceReply struct {
	b       []byte
	release func() // when b is a cached block's (Cache.ReadShared)
}

// data is a reply of b.
func data(b []byte) fuse.ReadResult { return &sliceReply{b: b} }

// shared is a reply written from a cached block's own bytes: go-fuse calls
// Done once it is sent, and only then may the block's buffer be reused.
func shared(b []byte, release func()) fuse.ReadResult { return &sliceReply{b, release} }

func (r *sliceReply) Bytes([]byte) ([]byte, fuse.Status) { return r.b, fuse.OK }
func (r *sliceReply) Slices() ([][]byte, fuse.Status)    { return [][]byte{r.b}, fuse.OK }
func (r *sliceReply) Size() int                          { return len(r.b) }

func (r *sliceReply) Done() {
	if r.release != nil {
		r.release()
		r.release = nil
	}
}
