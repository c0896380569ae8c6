package cache

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestStreamSpoolDirect: a stream writes its spool with direct I/O (no
// pages of it left in memory), keeps at most leadBlocks ahead of a reader
// that pauses, and still fills the spool to the end (a trickle), with the
// object's exact bytes, its unaligned tail included.
func TestStreamSpoolDirect(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if f := openDirect(probe); f == nil {
		t.Skipf("the file system of %s refuses O_DIRECT: spools are written through the page cache there", dir)
	} else {
		f.Close()
	}
	const bs = 1 << 20
	src := &memSource{data: randomData(10*bs + 777)}
	c, err := New(Options{Bytes: 8 * bs, BlockSize: bs, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := make([]byte, bs)
	if _, err := c.ReadAt(context.Background(), src, p, 0); err != nil || !bytes.Equal(p, src.data[:bs]) {
		t.Fatalf("first block: %v", err)
	}
	c.mu.Lock()
	o := c.objs[src.ID()]
	c.mu.Unlock()
	time.Sleep(leadWait / 4)
	if filled, _ := o.spooled(); filled > (1+leadBlocks+1)*bs {
		t.Fatalf("the stream ran %d bytes ahead of a paused reader at %d, lead %d blocks", filled, bs, leadBlocks)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if filled, running := o.spooled(); filled == int64(len(src.data)) {
			break
		} else if !running || time.Now().After(deadline) {
			t.Fatalf("the stream stopped at %d of %d bytes (running %v)", filled, len(src.data), running)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f, ok := c.Spooled(src)
	if !ok {
		t.Fatal("no complete spool")
	}
	defer f.Close()
	if InMemory(f) {
		t.Errorf("the spool's pages are in memory: not written with direct I/O")
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, src.data) {
		t.Fatalf("spool: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, src.data))
	}
	// A reader of the whole object now: the last blocks from memory, the
	// rest from the spool.
	all := make([]byte, len(src.data))
	if n, err := c.ReadAt(context.Background(), src, all, 0); n != len(all) || !bytes.Equal(all, src.data) {
		t.Fatalf("read of the whole object: %d %v", n, err)
	}
	st := o.stream()
	st.mu.Lock()
	kept := len(st.recent)
	st.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d recent blocks kept after the transfer and its reader ended", kept)
	}
	if src.opens.Load() != 1 {
		t.Fatalf("%d transfers, want 1", src.opens.Load())
	}
}

// countingSource is a stream-only memSource that counts the bytes its
// bodies hand out.
type countingSource struct {
	memSource
	read atomic.Int64
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (s *countingSource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	body, ranged, err := s.memSource.Open(ctx, off, n)
	return countingBody{body, &s.read}, ranged, err
}

// TestStreamStopsAtFailedWrite: a spool write that fails ends the transfer
// at once, with the error for the reader waiting, instead of reading the
// rest of the body into blocks that are never written.
func TestStreamStopsAtFailedWrite(t *testing.T) {
	const bs = 1 << 20
	src := &countingSource{memSource: memSource{data: randomData(32 * bs)}}
	c, err := New(Options{Bytes: 8 * bs, BlockSize: bs, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := make([]byte, bs)
	if _, err := c.ReadAt(context.Background(), src, p, 0); err != nil {
		t.Fatalf("first block: %v", err)
	}
	c.mu.Lock()
	st := c.objs[src.ID()].st
	c.mu.Unlock()
	st.f.Close() // every later write fails
	if st.direct != nil {
		st.direct.Close()
	}
	if _, err := c.ReadAt(context.Background(), src, p, int64(len(src.data))-bs); err == nil {
		t.Fatal("the last block was read, though the spool could not be written")
	}
	if n := src.read.Load(); n > int64(len(src.data))/2 {
		t.Fatalf("the stream read %d of %d bytes after its spool writes failed", n, len(src.data))
	}
}

// TestStreamSharedRecent: a streamed object read with ReadShared gets its
// bytes as slices of the stream's recent blocks; slices not yet released
// keep their bytes while the stream refills its ring (it gives held blocks
// new buffers instead of waiting for them), and the stream runs to the end.
func TestStreamSharedRecent(t *testing.T) {
	const bs = 256 << 10
	src := &memSource{data: randomData(32 * bs)}
	c, err := New(Options{Bytes: 4 << 20, BlockSize: bs, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	type kept struct {
		b       []byte
		off     int64
		release func()
	}
	var held []kept
	shared := 0
	buf := make([]byte, bs)
	for off := int64(0); off < int64(len(src.data)); off += bs {
		b, release, err := c.ReadShared(ctx, src, buf, off)
		if err != nil || len(b) != bs {
			t.Fatalf("read at %d: %d bytes, %v", off, len(b), err)
		}
		if &b[0] != &buf[0] {
			shared++
		}
		held = append(held, kept{b, off, release}) // none released until the end
	}
	for _, k := range held {
		if !bytes.Equal(k.b, src.data[k.off:k.off+bs]) {
			t.Fatalf("bytes shared at %d changed while held", k.off)
		}
		k.release()
	}
	if shared == 0 {
		t.Fatal("no read was answered from a recent block")
	}
	if n := src.opens.Load(); n != 1 {
		t.Fatalf("%d transfers, want 1", n)
	}
	t.Logf("%d of %d reads shared a recent block", shared, len(held))
}

// TestRangedSpoolFull: a ranged object read from byte 0 streams into a
// spool on a cache dir that fills up (a 2 MiB tmpfs): the reads past what
// the spool holds are fetched by Range instead, with the right bytes, and
// the stream is not started again; a cache dir where no spool can be made
// at all leaves the object to ranged fetches from the start.
func TestRangedSpoolFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	for _, c := range []struct {
		name string
		dir  string
	}{
		{"full", dir},
		{"no spool", filepath.Join(dir, "file")},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := &memSource{data: randomData(8<<20 + 100), ranged: true}
			cache, err := New(Options{Bytes: 8 << 20, BlockSize: 256 << 10, Dir: c.dir})
			if err != nil {
				t.Fatal(err)
			}
			defer cache.Close()
			if c.name == "no spool" { // the dir becomes a file: no spool can be created
				os.RemoveAll(c.dir)
				if err := os.WriteFile(c.dir, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var got bytes.Buffer
			buf := make([]byte, 128<<10)
			for off := int64(0); off < int64(len(src.data)); {
				n, err := cache.ReadAt(context.Background(), src, buf, off)
				if err != nil && err != io.EOF {
					t.Fatalf("read at %d: %v", off, err)
				}
				got.Write(buf[:n])
				off += int64(n)
			}
			if !bytes.Equal(got.Bytes(), src.data) {
				t.Fatalf("read %d bytes, not the object's", got.Len())
			}
			if n := src.streams.Load(); n > 1 {
				t.Errorf("%d streams: the stream was started again after its spool failed", n)
			}
			t.Logf("%d opens, %d of them streams", src.opens.Load(), src.streams.Load())
		})
	}
}
