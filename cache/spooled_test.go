package cache

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// TestSpooled: a complete spool is handed out as a read-only file of the
// object's exact bytes, which stays right after the spool is dropped; an
// incomplete spool and a ranged object have none.
func TestSpooled(t *testing.T) {
	ctx := context.Background()
	c, _ := New(Options{Bytes: 4 << 20, BlockSize: 256 << 10, Dir: t.TempDir()})
	defer c.Close()

	ranged := namedSource{&memSource{data: randomData(1 << 20), ranged: true}, "ranged"}
	p := make([]byte, len(ranged.data))
	if _, err := c.ReadAt(ctx, ranged, p, 0); err != nil {
		t.Fatal(err)
	}
	if f, ok := c.Spooled(ranged); ok {
		f.Close()
		t.Fatal("a ranged object has a spool")
	}

	src := namedSource{&memSource{data: randomData(3<<20 + 77)}, "stream"}
	if _, ok := c.Spooled(src); ok {
		t.Fatal("a spool before any read")
	}
	// The first block only: the stream may still run.
	if _, err := c.ReadAt(ctx, src, make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var f interface {
		io.ReaderAt
		Close() error
	}
	for {
		if sf, ok := c.Spooled(src); ok {
			f = sf
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream never completed its spool")
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer f.Close()
	got := make([]byte, len(src.data)+1)
	n, err := f.ReadAt(got, 0)
	if n != len(src.data) || err != io.EOF || !bytes.Equal(got[:n], src.data) {
		t.Fatalf("spool file: %d bytes, %v, equal %v", n, err, bytes.Equal(got[:n], src.data))
	}
	c.Forget(src.ID()) // drops the spool: the open file keeps its bytes
	if _, ok := c.Spooled(src); ok {
		t.Fatal("a spool after Forget")
	}
	n, err = f.ReadAt(got, 0)
	if n != len(src.data) || !bytes.Equal(got[:n], src.data) {
		t.Fatalf("after the drop: %d bytes, %v", n, err)
	}
}
