package backend

import (
	"errors"
	"io"
	"sync"
)

// uploadBody is a PUT's body that can be cut off: the HTTP transport may go
// on reading a request's body in its own goroutine after the round trip
// returned an error, so before the bytes are read again (a retry) the
// caller ends this body, and no read reaches them from then on.
type uploadBody struct {
	mu  sync.Mutex
	r   io.Reader
	end bool
}

var errBodyEnded = errors.New("upload body ended")

func NewUploadBody(r io.Reader) *uploadBody { return &uploadBody{r: r} }

func (b *uploadBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.end {
		return 0, errBodyEnded
	}
	return b.r.Read(p)
}

// Close is the transport's; it does not end the body (see End).
func (b *uploadBody) Close() error { return nil }

// End waits for a read in progress and refuses every later one.
func (b *uploadBody) End() {
	b.mu.Lock()
	b.end = true
	b.mu.Unlock()
}
