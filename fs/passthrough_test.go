package fs

import (
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestPTGate: an inode never mixes passthrough with page-cache opens, and
// another version never shares the backing file of the one before.
func TestPTGate(t *testing.T) {
	var g ptGate
	// Not complete on disk: through us, with the page cache.
	if m := g.admit("v1", false, false, false); m != ptCached {
		t.Fatalf("incomplete: %v", m)
	}
	// Complete now, but a page-cache open lasts: stays cached.
	if m := g.admit("v1", true, false, false); m != ptCached {
		t.Fatalf("complete while a cached open lasts: %v, want cached", m)
	}
	g.release(ptCached)
	g.release(ptCached)
	a := g.admit("v1", true, false, false)
	if a != ptBacking {
		t.Fatalf("complete, no other open: %v, want passthrough", a)
	}
	if m := g.admit("v1", true, false, false); m != ptBacking {
		t.Fatalf("second open of the same version: %v, want passthrough (shared backing)", m)
	}
	// Another version while v1's backing file is registered: direct I/O.
	if m := g.admit("v2", true, false, false); m != ptDirect {
		t.Fatalf("other version during passthrough: %v, want direct", m)
	}
	if m := g.admit("v1", false, false, false); m != ptDirect {
		t.Fatalf("no local file during passthrough: %v, want direct", m)
	}
	if fl := ptDirect.openFlags(fuse.FOPEN_KEEP_CACHE); fl != fuse.FOPEN_DIRECT_IO {
		t.Fatalf("direct open flags %#x", fl)
	}
	g.release(ptBacking)
	g.release(ptBacking)
	// Right after the last release go-fuse may still hold v1's backing
	// file: another version waits out backingGrace before passthrough.
	if m := g.admit("v2", true, false, false); m != ptCached {
		t.Fatalf("other version right after release: %v, want cached", m)
	}
	g.release(ptCached)
	if m := g.admit("v1", true, false, false); m != ptBacking {
		t.Fatalf("same version right after release: %v, want passthrough", m)
	}
	g.release(ptBacking)
	g.released = time.Now().Add(-2 * backingGrace)
	if m := g.admit("v2", true, false, false); m != ptBacking {
		t.Fatalf("other version after the grace: %v, want passthrough", m)
	}
	if g.id != "v2" || g.pt != 1 || g.cached != 0 {
		t.Fatalf("gate: id %q, %d passthrough, %d cached", g.id, g.pt, g.cached)
	}
}

// TestPTGateColdSpool: a complete spool whose pages are out of memory (a
// stream writes it with direct I/O) does not back the re-open of the
// version a cached open read: the inode's pages hold it. Another version,
// or a spool in memory, goes by passthrough.
func TestPTGateColdSpool(t *testing.T) {
	var g ptGate
	if m := g.admit("v1", false, false, false); m != ptCached { // the cold read
		t.Fatalf("incomplete: %v", m)
	}
	g.release(ptCached)
	if m := g.admit("v1", true, true, false); m != ptPages {
		t.Fatalf("re-open after a cached read, spool out of memory: %v, want the inode's pages", m)
	}
	g.release(ptPages)
	// A read of such an open reached us: the pages are gone.
	if m := g.admit("v1", true, true, false); m != ptPages {
		t.Fatalf("second re-open: %v, want the inode's pages", m)
	}
	g.missed("v1")
	g.release(ptPages)
	if m := g.admit("v1", true, true, false); m != ptBacking {
		t.Fatalf("re-open after a read missed the inode's pages: %v, want passthrough", m)
	}
	g.release(ptBacking)
	g.pages = "v1"
	if m := g.admit("v1", true, false, false); m != ptBacking {
		t.Fatalf("re-open, spool in memory: %v, want passthrough", m)
	}
	g.release(ptBacking)
	g.released = time.Now().Add(-2 * backingGrace)
	if m := g.admit("v2", true, true, false); m != ptBacking {
		t.Fatalf("a version no cached open read, spool out of memory: %v, want passthrough", m)
	}
}

// TestPTGateLargeCold: a cold open of a large file is read with direct I/O
// and leaves no pages to prefer, so its re-open, once the spool is
// complete, is passed through even when the spool is out of memory; while
// the spool fills, a second open is direct too.
func TestPTGateLargeCold(t *testing.T) {
	var g ptGate
	a := g.admit("v1", false, false, true)
	if a != ptStream || a.openFlags(0)&fuse.FOPEN_DIRECT_IO == 0 {
		t.Fatalf("cold open of a large file: %v, flags %#x", a, a.openFlags(0))
	}
	if m := g.admit("v1", false, false, true); m != ptStream {
		t.Fatalf("second open while the spool fills: %v", m)
	}
	g.release(ptStream)
	g.release(ptStream)
	if m := g.admit("v1", true, true, true); m != ptBacking {
		t.Fatalf("re-open of a complete spool out of memory after direct reads: %v, want passthrough", m)
	}
	g.release(ptBacking)
}
