package fs

import "github.com/hanwen/go-fuse/v2/fuse"

// sharedReply is a read's reply written from a cached block's own bytes
// (Cache.ReadShared): go-fuse calls Done once the reply is sent, and only
// then may the block's buffer be reused.
type sharedReply struct {
	b       []byte
	release func()
}

func reply(b []byte, release func()) fuse.ReadResult { return &sharedReply{b, release} }

func (r *sharedReply) Bytes([]byte) ([]byte, fuse.Status) { return r.b, fuse.OK }

// Slices has go-fuse write the reply with writev straight from b (no try
// at splicing a buffer that is not a file).
func (r *sharedReply) Slices() ([][]byte, fuse.Status) { return [][]byte{r.b}, fuse.OK }

func (r *sharedReply) Size() int { return len(r.b) }

func (r *sharedReply) Done() {
	if r.release != nil {
		r.release()
		r.release = nil
	}
}
