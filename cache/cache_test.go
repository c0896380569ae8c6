package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memSource serves data, honouring offsets only when ranged; it can fail the
// first few streams part-way, as an expiring URL does.
type memSource struct {
	data     []byte
	ranged   bool
	opens    atomic.Int64
	streams  atomic.Int64 // opens to the end (n < 0)
	failOnce atomic.Int64 // streams to cut after this many bytes (0: none)
	// holdAt, if set, stops each stream there until hold is closed.
	holdAt int64
	hold   chan struct{}
}

func (m *memSource) ID() string  { return "mem" }
func (m *memSource) Size() int64 { return int64(len(m.data)) }
func (m *memSource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	m.opens.Add(1)
	if n < 0 {
		m.streams.Add(1)
	}
	if m.hold != nil && n < 0 && off < m.holdAt {
		if !m.ranged {
			off = 0
		}
		r := io.MultiReader(bytes.NewReader(m.data[off:m.holdAt]), &heldReader{ctx: ctx, hold: m.hold, rest: bytes.NewReader(m.data[m.holdAt:])})
		return io.NopCloser(r), m.ranged, nil
	}
	if !m.ranged {
		r := io.Reader(bytes.NewReader(m.data))
		if cut := m.failOnce.Swap(0); cut > 0 {
			r = io.MultiReader(io.LimitReader(r, cut), errReader{})
		}
		return io.NopCloser(r), false, nil
	}
	end := int64(len(m.data))
	if n >= 0 && off+n < end {
		end = off + n
	}
	return io.NopCloser(bytes.NewReader(m.data[off:end])), true, nil
}

// heldReader waits for hold (or ctx) before it reads rest.
type heldReader struct {
	ctx  context.Context
	hold chan struct{}
	rest io.Reader
}

func (h *heldReader) Read(p []byte) (int, error) {
	select {
	case <-h.hold:
		return h.rest.Read(p)
	case <-h.ctx.Done():
		return 0, h.ctx.Err()
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func randomData(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(b)
	return b
}

// testReads reads an object larger than the cache sequentially from start,
// then at random from 8 goroutines.
func testReads(t *testing.T, ranged bool, start int64) {
	src := &memSource{data: randomData(10<<20 + 777), ranged: ranged}
	c, err := New(Options{Bytes: 4 << 20, BlockSize: 256 << 10, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	// Sequential read of the whole object, larger than the cache.
	var got bytes.Buffer
	buf := make([]byte, 128<<10)
	for off := start; ; {
		n, err := c.ReadAt(ctx, src, buf, off)
		got.Write(buf[:n])
		off += int64(n)
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), src.data[start:]) {
		t.Fatalf("sequential read differs (%d bytes)", got.Len())
	}
	switch streams := src.streams.Load(); {
	case start == 0 && (streams != 1 || src.opens.Load() != 1):
		t.Fatalf("read from byte 0: %d opens, %d of them streams; want one stream", src.opens.Load(), streams)
	case start > 0 && ranged && streams != 0:
		t.Fatalf("ranged read from %d: %d streams, want blocks by Range", start, streams)
	}
	// Concurrent random reads, including the last byte and past EOF.
	kept := make(chan sharedRead, 8*50)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 2))
			for i := 0; i < 50; i++ {
				off := r.Int64N(int64(len(src.data)) + 10)
				p := make([]byte, r.IntN(300<<10)+1)
				var n int
				var err error
				if g%2 == 1 { // no-copy reads: p, or a slice of one block
					var b []byte
					var release func()
					b, release, err = c.ReadShared(ctx, src, p, off)
					n = copy(p, b)
					if len(b) > len(p) {
						t.Errorf("ReadShared returned %d bytes for %d", len(b), len(p))
					}
					if err == nil && len(b) > 0 {
						kept <- sharedRead{b, off, release} // held until checked below
					} else {
						release()
					}
				} else {
					n, err = c.ReadAt(ctx, src, p, off)
				}
				if off >= int64(len(src.data)) {
					if err != io.EOF || n != 0 {
						t.Errorf("past EOF: %d %v", n, err)
					}
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(p[:n], src.data[off:off+int64(n)]) {
					t.Errorf("random read at %d differs", off)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(kept)
	// Slices handed out by ReadShared and not yet released still hold
	// their bytes after every later read and eviction: a block's buffer is
	// reused only once nothing holds it.
	for k := range kept {
		if !bytes.Equal(k.b, src.data[k.off:k.off+int64(len(k.b))]) {
			t.Fatalf("bytes read shared at %d changed later", k.off)
		}
		k.release()
	}
	if start == 0 && src.opens.Load() != 1 {
		t.Fatalf("source opened %d times, want 1 (the spool serves re-reads)", src.opens.Load())
	}
}

type sharedRead struct {
	b       []byte
	off     int64
	release func()
}

// TestBlocksReused: a sequential read of an object 2.5 times the cache
// size reuses evicted blocks' buffers instead of allocating one per block.
func TestBlocksReused(t *testing.T) {
	src := &memSource{data: randomData(10 << 20), ranged: true}
	c, err := New(Options{Bytes: 4 << 20, BlockSize: 256 << 10, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	buf := make([]byte, 128<<10)
	// From the second block: a read from byte 0 would stream instead.
	for off := c.BlockSize(); off < int64(len(src.data)); off += int64(len(buf)) {
		b, release, err := c.ReadShared(ctx, src, buf, off)
		if err != nil || !bytes.Equal(b, src.data[off:off+int64(len(b))]) || len(b) != len(buf) {
			t.Fatalf("read at %d: %d bytes, %v", off, len(b), err)
		}
		release()
	}
	blocks := int64(len(src.data)) / c.BlockSize()
	if got := c.pool.fresh.Load(); got > blocks*3/4 {
		t.Fatalf("%d fresh buffers for %d blocks through a cache of %d: evicted blocks not reused", got, blocks, c.blocks.Len())
	}
}

// A ranged object read from byte 0 streams (one transfer fills the spool);
// from elsewhere its blocks are fetched by Range into the LRU.
func TestRangedFromStart(t *testing.T) { testReads(t, true, 0) }
func TestRanged(t *testing.T)          { testReads(t, true, 256<<10+5) }
func TestStream(t *testing.T)          { testReads(t, false, 0) }

// TestRangedFarAheadOfStream: while a ranged object's stream is held at
// 1 MiB, a read far ahead is fetched by Range and answered, and one just
// ahead waits for the stream; both right.
func TestRangedFarAheadOfStream(t *testing.T) {
	hold := make(chan struct{})
	src := &memSource{data: randomData(32 << 20), ranged: true, holdAt: 1 << 20, hold: hold}
	c, err := New(Options{Bytes: 16 << 20, BlockSize: 256 << 10, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	p := make([]byte, 64<<10)
	if _, err := c.ReadAt(ctx, src, p, 0); err != nil || !bytes.Equal(p, src.data[:len(p)]) {
		t.Fatalf("read at 0: %v", err)
	}
	far := int64(20 << 20)
	if _, err := c.ReadAt(ctx, src, p, far); err != nil || !bytes.Equal(p, src.data[far:far+int64(len(p))]) {
		t.Fatalf("read far ahead of the held stream: %v", err)
	}
	near := make(chan error, 1)
	go func() {
		q := make([]byte, 64<<10)
		_, err := c.ReadAt(ctx, src, q, 2<<20)
		if err == nil && !bytes.Equal(q, src.data[2<<20:2<<20+len(q)]) {
			err = errors.New("bytes differ")
		}
		near <- err
	}()
	select {
	case err := <-near:
		t.Fatalf("a read just ahead of the held stream did not wait for it: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(hold)
	if err := <-near; err != nil {
		t.Fatalf("read just ahead of the stream: %v", err)
	}
	if n := src.streams.Load(); n != 1 {
		t.Fatalf("%d streams, want 1", n)
	}
}

func TestStreamRestartsAfterCut(t *testing.T) {
	src := &memSource{data: randomData(3 << 20)}
	src.failOnce.Store(1<<20 + 5)
	c, _ := New(Options{Bytes: 8 << 20, Dir: t.TempDir()})
	defer c.Close()
	p := make([]byte, len(src.data))
	n, err := c.ReadAt(context.Background(), src, p, 0)
	if err != nil || n != len(p) || !bytes.Equal(p, src.data) {
		t.Fatalf("read after cut: %d %v", n, err)
	}
	if src.opens.Load() != 2 {
		t.Fatalf("opens %d, want 2", src.opens.Load())
	}
}

func TestRereadOnlyEvicted(t *testing.T) {
	src := &memSource{data: randomData(2 << 20), ranged: true}
	c, _ := New(Options{Bytes: 16 << 20, BlockSize: 256 << 10, Dir: t.TempDir()})
	defer c.Close()
	p := make([]byte, len(src.data))
	if _, err := c.ReadAt(context.Background(), src, p, 0); err != nil {
		t.Fatal(err)
	}
	before := src.opens.Load()
	if _, err := c.ReadAt(context.Background(), src, p, 0); err != nil {
		t.Fatal(err)
	}
	if src.opens.Load() != before {
		t.Fatalf("warm re-read opened %d more transfers", src.opens.Load()-before)
	}
}

func TestCancelledRead(t *testing.T) {
	src := &blockingSource{}
	c, _ := New(Options{Bytes: 8 << 20, Dir: t.TempDir()})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.ReadAt(ctx, src, make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

type blockingSource struct{}

func (blockingSource) ID() string  { return "block" }
func (blockingSource) Size() int64 { return 100 }
func (blockingSource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	<-ctx.Done()
	return nil, false, ctx.Err()
}

type namedSource struct {
	*memSource
	id string
}

func (n namedSource) ID() string { return n.id }

// TestSpoolBudget: idle spools beyond SpoolBytes are dropped, least recently
// used first; a dropped object read again makes a new transfer, right bytes.
func TestSpoolBudget(t *testing.T) {
	dir := t.TempDir()
	c, _ := New(Options{Bytes: 4 << 20, BlockSize: 256 << 10, Dir: dir, SpoolBytes: 5 << 20})
	defer c.Close()
	var srcs []namedSource
	for i := 0; i < 4; i++ {
		srcs = append(srcs, namedSource{&memSource{data: randomData(2<<20 + i)}, string(rune('a' + i))})
	}
	ctx := context.Background()
	for _, s := range srcs {
		p := make([]byte, len(s.data))
		if n, err := c.ReadAt(ctx, s, p, 0); err != nil || n != len(p) || !bytes.Equal(p, s.data) {
			t.Fatalf("%s: %d %v", s.id, n, err)
		}
	}
	// Let the last stream finish and the trim interval pass, then trim.
	time.Sleep(150 * time.Millisecond)
	p := make([]byte, 1)
	c.ReadAt(ctx, srcs[3], p, 0)
	entries, _ := os.ReadDir(dir)
	var total int64
	for _, e := range entries {
		fi, _ := e.Info()
		total += fi.Size()
	}
	if total > 5<<20 {
		t.Fatalf("spools take %d bytes, over the 5 MiB budget", total)
	}
	before := srcs[0].opens.Load()
	q := make([]byte, len(srcs[0].data))
	if n, err := c.ReadAt(ctx, srcs[0], q, 0); err != nil || n != len(q) || !bytes.Equal(q, srcs[0].data) {
		t.Fatalf("re-read of a dropped spool: %d %v", n, err)
	}
	if srcs[0].opens.Load() != before+1 {
		t.Fatalf("re-read made %d transfers, want 1", srcs[0].opens.Load()-before)
	}
}

// TestReadShared: a range within one block comes back as the block's own
// bytes (no copy into p); one across blocks, or at the end, is copied into p.
// A streamed object keeps no blocks in the LRU: its reads share a recent
// block of the stream while it has one (TestStreamSharedRecent), else read
// the spool into p.
func TestReadShared(t *testing.T) {
	for _, ranged := range []bool{false, true} {
		src := &memSource{data: randomData(1<<20 + 100), ranged: ranged}
		c, err := New(Options{Bytes: 8 << 20, BlockSize: 256 << 10, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, tc := range []struct {
			off    int64
			n      int
			inP    bool // answered in p
			length int
		}{
			{0, 256 << 10, false, 256 << 10},
			{1000, 4096, false, 4096},
			{256<<10 - 10, 20, true, 20}, // across two blocks
			{1 << 20, 4096, false, 100},  // the short last block
			{1<<20 + 100, 10, true, 0},   // at the end: EOF
		} {
			p := make([]byte, tc.n)
			b, release, err := c.ReadShared(ctx, src, p, tc.off)
			defer release()
			if tc.length == 0 {
				if err != io.EOF || len(b) != 0 {
					t.Fatalf("ranged=%v at the end: %d bytes, %v", ranged, len(b), err)
				}
				continue
			}
			if err != nil || len(b) != tc.length || !bytes.Equal(b, src.data[tc.off:tc.off+int64(tc.length)]) {
				t.Fatalf("ranged=%v at %d: %d bytes, %v", ranged, tc.off, len(b), err)
			}
			if inP := &b[0] == &p[0]; inP != tc.inP && (ranged || tc.inP) {
				t.Fatalf("ranged=%v at %d: answered in p = %v, want %v", ranged, tc.off, inP, tc.inP)
			}
		}
		c.Close()
	}
}
