package fs

import (
	"os"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// FUSE passthrough (Linux 6.9+, CAP_SYS_ADMIN): a file whose bytes are
// complete on local disk (a finished spool, an export package file) is
// opened with the kernel reading its backing file directly, with no
// request to this process. go-fuse registers the fd our handle gives
// (PassthroughFd) at open and falls back to plain reads for good where the
// kernel or our privileges refuse.
//
// The kernel refuses (EIO at open) to mix, on one inode, passthrough opens
// with opens that use the page cache, and go-fuse keeps one backing file per
// inode while any passthrough open of it lasts, whatever the new handle's
// fd. ptGate tracks both per node, so that an open is given passthrough
// only when that is safe, and otherwise read through this process, with
// direct I/O while passthrough opens of the inode last.
type ptGate struct {
	mu       sync.Mutex
	id       string    // content version the backing file (if any) holds
	pages    string    // content version the inode's pages may hold (its last cached open's)
	pt       int       // passthrough opens not yet released
	cached   int       // opens through the page cache not yet released
	released time.Time // last release of a passthrough open
}

// backingGrace covers the moment between a passthrough handle's Release
// and go-fuse unregistering the inode's backing file (right after it, in
// the same request): an open of another version meanwhile could be given
// the old backing file, so it is read through this process instead.
const backingGrace = time.Second

// ptMode is how an open is served.
type ptMode int

const (
	ptCached  ptMode = iota // through this process, with the page cache
	ptDirect                // through this process, direct I/O (passthrough opens last)
	ptBacking               // passthrough from a local file
	ptPages                 // as ptCached, where the inode's pages should hold the version (admit)
	ptStream                // through this process, direct I/O: a cold read of a large file (FS.large)
)

// admit decides an open of content version id; canBack says whether a
// complete local file could back it, cold whether that file's pages are
// out of memory (a spool written with direct I/O). The inode's own pages
// from a cached open of the same version are then preferred: passthrough
// would read from disk what the kernel holds (the re-read after a cold
// read). An open of a large file that cannot be passed through is read
// with direct I/O, leaving no pages, so that its re-open passes through.
// The open is counted until release.
func (g *ptGate) admit(id string, canBack, cold, large bool) ptMode {
	g.mu.Lock()
	defer g.mu.Unlock()
	pages := canBack && cold && id == g.pages
	switch {
	case g.pt > 0 && id == g.id && canBack:
		g.pt++
		return ptBacking
	case g.pt > 0:
		return ptDirect
	case canBack && g.cached == 0 && !pages && (id == g.id || time.Since(g.released) >= backingGrace):
		g.id = id
		g.pt++
		return ptBacking
	case pages:
		g.cached++
		return ptPages
	case large:
		g.cached++ // an ordinary open for the kernel: not passthrough
		return ptStream
	default:
		g.cached++
		g.pages = id
		return ptCached
	}
}

// missed is told that a read of a ptPages open of version id reached us:
// the kernel no longer holds the pages (memory pressure, fadvise), so the
// next open of id is passed through to the spool.
func (g *ptGate) missed(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pages == id {
		g.pages = ""
	}
}

// release ends an open admitted with mode m.
func (g *ptGate) release(m ptMode) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch m {
	case ptBacking:
		g.pt--
		g.released = time.Now()
	case ptCached, ptPages, ptStream:
		g.cached--
	}
}

// openFlags are the FOPEN flags for mode m, from those of a cached open.
func (m ptMode) openFlags(cached uint32) uint32 {
	if m == ptDirect || m == ptStream {
		return fuse.FOPEN_DIRECT_IO
	}
	return cached
}

// backing is a read-only local file handed to the kernel for passthrough.
// It is embedded in the handles of passthrough opens only, so go-fuse sees
// PassthroughFd on those alone.
type backing struct {
	file  *os.File
	count func() // counts a registration (metrics)
}

// PassthroughFd is asked by go-fuse at open, when the inode has no backing
// file yet; the kernel keeps its own reference to the file.
func (b *backing) PassthroughFd() (int, bool) {
	if b.count != nil {
		b.count()
	}
	return int(b.file.Fd()), true
}
