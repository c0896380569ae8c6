package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

var errLost = errors.New("connection reset by peer")

// lossySource cuts its first cuts transfers with errLost, the k-th after
// k×every bytes (so that each resume brings bytes);
// it honours Range when ranged. A changed source serves other bytes from
// the second transfer on.
type lossySource struct {
	data    []byte
	ranged  bool
	every   int64
	cuts    atomic.Int64
	opens   atomic.Int64
	offsets chan int64
	changed bool
}

func (s *lossySource) ID() string  { return "lossy" }
func (s *lossySource) Size() int64 { return int64(len(s.data)) }
func (s *lossySource) Transient(err error) bool {
	return errors.Is(err, errLost)
}

func (s *lossySource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	k := s.opens.Add(1)
	if s.offsets != nil {
		s.offsets <- off
	}
	data := s.data
	if s.changed && k > 1 {
		data = bytes.Clone(data)
		data[0] ^= 1
	}
	if !s.ranged {
		off, n = 0, -1
	}
	end := int64(len(data))
	if n >= 0 && off+n < end {
		end = off + n
	}
	var r io.Reader = bytes.NewReader(data[off:end])
	if s.cuts.Add(-1) >= 0 {
		r = io.MultiReader(io.LimitReader(r, k*s.every), &failReader{errLost})
	}
	return io.NopCloser(r), s.ranged, nil
}

type failReader struct{ err error }

func (f *failReader) Read([]byte) (int, error) { return 0, f.err }

func readAll(c *Cache, src Source, size int) ([]byte, error) {
	p := make([]byte, size)
	n, err := c.ReadAt(context.Background(), src, p, 0)
	return p[:n], err
}

// TestStreamResumesAfterLoss: a stream that loses its connection three
// times part-way is resumed each time (from byte 0, the spooled bytes
// checked, not trusted) and gives the right bytes.
func TestStreamResumesAfterLoss(t *testing.T) {
	src := &lossySource{data: randomData(5<<20 + 3), every: 1<<20 + 100}
	src.cuts.Store(3)
	c, _ := New(Options{Bytes: 16 << 20, Dir: t.TempDir()})
	defer c.Close()
	got, err := readAll(c, src, len(src.data))
	if err != nil || !bytes.Equal(got, src.data) {
		t.Fatalf("read: %d bytes, %v", len(got), err)
	}
	if n := src.opens.Load(); n != 4 {
		t.Fatalf("%d transfers, want 4 (one and three resumes)", n)
	}
}

// TestStreamResumeSeesChange: a resumed stream whose first bytes differ from
// the spooled ones fails with ErrChanged (ESTALE), never mixing versions.
func TestStreamResumeSeesChange(t *testing.T) {
	src := &lossySource{data: randomData(3 << 20), every: 1 << 20, changed: true}
	src.cuts.Store(1)
	c, _ := New(Options{Bytes: 16 << 20, Dir: t.TempDir()})
	defer c.Close()
	_, err := readAll(c, src, len(src.data))
	if !errors.Is(err, ErrChanged) {
		t.Fatalf("got %v, want ErrChanged", err)
	}
}

// TestRangedResumesFromLostBlock: a ranged fetch cut part-way resumes at the
// first block it did not get, with Range.
func TestRangedResumesFromLostBlock(t *testing.T) {
	const bs = 256 << 10
	src := &lossySource{data: randomData(4 * bs), ranged: true, every: bs + 10, offsets: make(chan int64, 100)}
	src.cuts.Store(1)
	c, _ := New(Options{Bytes: 16 << 20, BlockSize: bs, Dir: t.TempDir()})
	defer c.Close()
	got, err := readAll(c, src, len(src.data))
	if err != nil || !bytes.Equal(got, src.data) {
		t.Fatalf("read: %d bytes, %v", len(got), err)
	}
	close(src.offsets)
	var offs []int64
	for o := range src.offsets {
		offs = append(offs, o)
	}
	if len(offs) != 2 || offs[0] != 0 || offs[1] != bs {
		t.Fatalf("requests at %v, want [0 %d]", offs, bs)
	}
}

// failSource fails every Open with a lasting error.
type failSource struct{ opens atomic.Int64 }

func (s *failSource) ID() string  { return "fail" }
func (s *failSource) Size() int64 { return 1000 }
func (s *failSource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	s.opens.Add(1)
	return nil, false, errors.New("stalled")
}

// TestFailureRememberedPerOpen: the kernel's retry of a failed read (same
// open) gets the error at once; a new open makes a new transfer.
func TestFailureRememberedPerOpen(t *testing.T) {
	c, _ := New(Options{Bytes: 8 << 20, Dir: t.TempDir()})
	defer c.Close()
	first := &failSource{}
	if _, err := readAll(c, first, 10); err == nil {
		t.Fatal("no error")
	}
	n := first.opens.Load()
	if _, err := readAll(c, first, 10); err == nil || first.opens.Load() != n {
		t.Fatalf("retry on the same open: %v, %d new transfers", err, first.opens.Load()-n)
	}
	second := &failSource{} // same ID: another open of the same object
	if _, err := readAll(c, second, 10); err == nil || first.opens.Load() == n {
		t.Fatalf("new open: %v, no new transfer", err)
	}
}

// hangSource sends nothing until its request is cancelled.
type hangSource struct {
	ranged    bool
	cancelled chan struct{}
}

func (s *hangSource) ID() string  { return "hang" }
func (s *hangSource) Size() int64 { return 4 << 20 }
func (s *hangSource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	return &hangBody{ctx: ctx, s: s}, s.ranged, nil
}

type hangBody struct {
	ctx context.Context
	s   *hangSource
}

func (b *hangBody) Read([]byte) (int, error) {
	<-b.ctx.Done()
	close(b.s.cancelled)
	return 0, b.ctx.Err()
}
func (b *hangBody) Close() error { return nil }

// TestInterruptCancelsTransfer: when the only reader waiting for a transfer
// is interrupted, the transfer is cancelled; the read says EINTR's error.
func TestInterruptCancelsTransfer(t *testing.T) {
	for _, ranged := range []bool{false, true} {
		src := &hangSource{ranged: ranged, cancelled: make(chan struct{})}
		c, _ := New(Options{Bytes: 8 << 20, Dir: t.TempDir()})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(100 * time.Millisecond); cancel() }()
		_, err := c.ReadAt(ctx, src, make([]byte, 100), 0)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ranged %v: got %v, want context.Canceled", ranged, err)
		}
		select {
		case <-src.cancelled:
		case <-time.After(5 * time.Second):
			t.Fatalf("ranged %v: the transfer was not cancelled", ranged)
		}
		c.Close()
	}
}

// TestAbandonEndsWaits: Abandon(src) (a close) ends the reads of that open
// that wait, and the transfer no one else waits for is cancelled. Busy says
// so before (a read waits), and not once all has ended.
func TestAbandonEndsWaits(t *testing.T) {
	src := &hangSource{cancelled: make(chan struct{})}
	c, _ := New(Options{Bytes: 8 << 20, Dir: t.TempDir()})
	defer c.Close()
	if c.Busy(src) {
		t.Fatal("busy before any read")
	}
	busy := make(chan bool, 1)
	go func() { time.Sleep(100 * time.Millisecond); busy <- c.Busy(src); c.Abandon(src) }()
	_, err := c.ReadAt(context.Background(), src, make([]byte, 100), 0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if !<-busy {
		t.Error("not busy while a read waited")
	}
	select {
	case <-src.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the transfer was not cancelled")
	}
	for deadline := time.Now().Add(5 * time.Second); c.Busy(src); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still busy after the read and its transfer ended")
		}
	}
}

// slowEndSource blocks until its request is cancelled, then takes a while
// to end, as a transfer tearing down its connection does.
type slowEndSource struct {
	ranged bool
	ended  atomic.Int64
}

func (s *slowEndSource) ID() string  { return "slow-end" }
func (s *slowEndSource) Size() int64 { return 4 << 20 }
func (s *slowEndSource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	return &slowEndBody{ctx: ctx, s: s}, s.ranged, nil
}

type slowEndBody struct {
	ctx context.Context
	s   *slowEndSource
}

func (b *slowEndBody) Read([]byte) (int, error) {
	<-b.ctx.Done()
	time.Sleep(200 * time.Millisecond)
	b.s.ended.Add(1)
	return 0, b.ctx.Err()
}
func (b *slowEndBody) Close() error { return nil }

// TestCloseWaitsForTransfers: Close returns only once the transfers it
// cancelled have ended, so none outlives the unmount.
func TestCloseWaitsForTransfers(t *testing.T) {
	for _, ranged := range []bool{false, true} {
		src := &slowEndSource{ranged: ranged}
		c, _ := New(Options{Bytes: 8 << 20, Dir: t.TempDir()})
		// The reader is interrupted with the unmount, as the kernel's are.
		ctx, cancel := context.WithCancel(context.Background())
		read := make(chan error, 1)
		go func() {
			_, err := c.ReadAt(ctx, src, make([]byte, 100), 0)
			read <- err
		}()
		for c.Fetches.Load() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		go func() { time.Sleep(50 * time.Millisecond); cancel() }()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if src.ended.Load() == 0 {
			t.Errorf("ranged %v: Close returned before the transfer ended", ranged)
		}
		if err := <-read; err == nil {
			t.Errorf("ranged %v: the read of a closed cache succeeded", ranged)
		}
	}
}
