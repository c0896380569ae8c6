// Package fs is the go-fuse node tree: POSIX semantics over the backend's
// objects, errno mapping, attribute and entry timeouts. It never sees an HTTP
// status code; the backend never sees an inode.
package fs

import (
	"cmp"
	"context"
	"hash/fnv"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/cache"
)

// Options hold what the tree needs from the rest of the program.
type Options struct {
	Catalog   Catalog
	Downloads Downloads
	Guests    Guests // nil: no vms/
	Cache     *cache.Cache
	TTL       time.Duration // attribute and entry cache
	ReadOnly  bool
	Writes    *Writes // nil: libraries/ is read-only
	Log       *slog.Logger
	UID, GID  uint32
	Umask     uint32 // bits taken from the modes vspherefs makes up (not a guest file's own)
	FsName    string // the source /proc/mounts shows (the vCenter host); "" is "vspherefs"

	StatusSocket string // the mount's status socket, named by the root's user.vsphere.status_socket

	// StagingDir holds files open for writing (<cache-dir>/staging/...);
	// RecoveryDir keeps the bytes of commits that failed (<cache-dir>/recovery).
	StagingDir, RecoveryDir string

	Exports       Exports       // nil: no exports/ or disks/
	OpenDiskImage OpenDiskImage // decodes the disks of exports for disks/
	Spaces        Spaces        // datastore figures for statfs; nil: fixed ones

	// Passthrough counts files handed to the kernel as passthrough backing
	// files (nil: not counted).
	Passthrough *atomic.Int64

	// DirectReadSize: a cold read of a library or guest file this large or
	// larger bypasses the kernel's page cache (0: never). Its spool serves
	// the re-reads (passthrough.go).
	DirectReadSize int64

	// InoSweep and InoGrace tune the table of renamed and removed guest
	// nodes (guestInos): 0 for the defaults; tests set them small.
	InoSweep int
	InoGrace time.Duration
}

// FS is the state shared by every node of one mount.
//
// Lock order: a goroutine may take a lock only while holding none below it in this
// list (each is declared where its comment says what it guards):
//
//	itemWrites.session  one update session per item at a time (staging.go)
//	staged.io           a staged file's bytes (staging.go)
//	Writes.mu           the write side's tables: items, staged files (staging.go)
//	staged.mu           a staged file's metadata: size, dirty, stream (staging.go)
//	guestFile.mu, libFile.mu, exportFile.mu
//	                    a node's own state (guestfile.go, libfile.go, exportfile.go)
//	guestInos.mu        the guest inode table (guestnode.go)
//	guestPaths          every guest node's link to its directory (guestnode.go)
//	fileTimes.mu, indexMu, ptGate.mu, listingMemo.mu, mountIdent.mu, the cache's locks
//	                    leaves: nothing is taken under them
//
// A stagedFile (stagedfile.go), the local copy of a file written in either
// tree, has no lock of its own: staged.io and staged.mu guard a library
// file's, guestFile.mu a guest file's.
//
// Across network I/O: itemWrites.session (the queue of an item's sessions,
// not a guard of data) and staged.io while an open loads the server's bytes
// (stat waits on staged.loaded, holding nothing). A guest file's own calls
// (Lookup and Chattr of an open for writing or a setattr, the load of its
// current bytes) and its commit's upload run with guestFile.mu released,
// the file marked busy or committing meanwhile (guestfile.go, guestwrite.go:
// outsideLocked, commitLocked): changes to the file wait for that signal
// holding nothing, and stat and listings answer from the metadata, so a
// stalled load or upload blocks none of them. No lock of a directory, of
// Writes or of a tree is held across network I/O. A function named …Locked
// is called with its receiver's lock held (it may release it meanwhile, as
// idleLocked and outsideLocked do, and re-checks the state after).
type FS struct {
	Options
	mounted time.Time
	inos    guestInos
	// commits are the commits running in both trees: the Writes', or the
	// tree's own without Writes (commits.go).
	commits *commits
	mnt     atomic.Pointer[mountIdent] // this mount, for descriptors' mnt_id (fdpeers.go); set once mounted
	// directMmap: the kernel lets a direct I/O open be mmap'ed shared
	// (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6+); without it no read open is
	// made direct for speed, since mmap of it would fail with ENODEV.
	directMmap atomic.Bool
}

// large says whether a cold read of a file of this size should bypass the
// page cache: filling it costs the mount more than the network does once
// the kernel's recently freed pages are used up (BENCHMARKS.md, seventh
// session), and a file this large read once would push out what users
// re-read. Not for an endpoint known to honour Range: its bytes have no
// spool to serve re-reads, so the page cache is where they are kept.
func (f *FS) large(src cache.Source) bool {
	return f.DirectReadSize > 0 && src.Size() >= f.DirectReadSize && f.directMmap.Load() && !f.Cache.Ranged(src)
}

func (f *FS) countPassthrough() {
	if f.Passthrough != nil {
		f.Passthrough.Add(1)
	}
}

// root is the top directory: one folder per kind of content.
type root struct {
	gofs.Inode
	readOnlyDir
	fs *FS
}

var _ gofs.NodeLookuper = (*root)(nil)

// Mount mounts the tree at dir and returns the running server.
func Mount(dir string, opts Options, allowOther, debug bool) (*fuse.Server, error) {
	_, server, err := mount(dir, opts, allowOther, debug)
	return server, err
}

// mount is Mount, also returning the tree's state (for in-process tests).
func mount(dir string, opts Options, allowOther, debug bool) (*FS, *fuse.Server, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.UID == 0 && opts.GID == 0 {
		opts.UID, opts.GID = uint32(os.Getuid()), uint32(os.Getgid())
	}
	f := &FS{Options: opts, mounted: time.Now()}
	f.inos.init(opts.InoSweep, opts.InoGrace, opts.Log)
	f.commits = new(commits)
	if opts.Writes != nil {
		opts.Writes.fs = f
		f.commits = &opts.Writes.commits
	}
	ttl := opts.TTL
	neg := ttl
	mo := fuse.MountOptions{
		FsName: cmp.Or(opts.FsName, "vspherefs"),
		Name:   "vspherefs",
		// root mounts with mount(2) and nothing else, so that its errors
		// are mount(2)'s; other users go through fusermount3.
		DirectMountStrict: os.Geteuid() == 0,
		AllowOther:        allowOther,
		MaxWrite:          1 << 20,
		MaxReadAhead:      1 << 20,
		Debug:             debug,
		// open(O_TRUNC) arrives as one call, not as an open that stages the
		// old bytes followed by a truncate.
		// Direct I/O opens (writes, large cold reads) may be mmap'ed shared.
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_DIRECT_IO_ALLOW_MMAP,
	}
	if allowOther {
		mo.Options = append(mo.Options, "default_permissions")
	}
	raw := gofs.NewNodeFS(&root{fs: f}, &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &neg,
		UID:             opts.UID,
		GID:             opts.GID,
	})
	server, err := fuse.NewServer(signalFilter{&statfsDefault{RawFileSystem: raw, fs: f}}, dir, &mo)
	if err != nil {
		return nil, nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, nil, err // the caller removes a mount left half made
	}
	mnt := newMountIdent(dir)
	f.mnt.Store(mnt)
	if mnt != nil {
		raiseReadAhead(mnt.dev, mo.MaxReadAhead>>10, opts.Log)
	}
	f.directMmap.Store(server.KernelSettings().Flags64()&fuse.CAP_DIRECT_IO_ALLOW_MMAP != 0)
	return f, server, nil
}

// tops are the root's folders, in listing order.
var tops = []string{"libraries", "vms", "exports", "disks"}

func (r *root) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	entries := make([]fuse.DirEntry, 0, len(tops))
	for _, name := range tops {
		if name == "vms" && r.fs.Guests == nil {
			continue
		}
		if (name == "exports" || name == "disks") && r.fs.Exports == nil {
			continue
		}
		entries = append(entries, fuse.DirEntry{Name: name, Mode: fuse.S_IFDIR, Ino: ino("top", name)})
	}
	return gofs.NewListDirStream(entries), 0
}

func (r *root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	var node gofs.InodeEmbedder
	switch name {
	case "libraries":
		node = &librariesDir{fs: r.fs}
	case "vms":
		if r.fs.Guests == nil {
			return nil, syscall.ENOENT
		}
		node = &vmsDir{fs: r.fs}
	case "exports", "disks":
		if r.fs.Exports == nil {
			return nil, syscall.ENOENT
		}
		node = &exportsDir{fs: r.fs, disks: name == "disks"}
	default:
		return nil, syscall.ENOENT
	}
	r.fs.dirAttr(&out.Attr, r.fs.mounted)
	return r.NewInode(ctx, node, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: ino("top", name)}), 0
}

func (r *root) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.fs.dirAttr(&out.Attr, r.fs.mounted)
	return 0
}

// ino is a stable inode number for an object, so the kernel sees one inode
// per object however many times it is looked up.
func ino(kind, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return max(h.Sum64()>>1, 2) // below go-fuse's automatic numbers (from 2^63); never the root's 1
}

func (f *FS) dirAttr(a *fuse.Attr, mtime time.Time) {
	a.Mode = fuse.S_IFDIR | 0o755
	if f.ReadOnly {
		a.Mode = fuse.S_IFDIR | 0o555
	}
	a.Mode &^= f.Umask
	a.Nlink = 2
	a.Owner = fuse.Owner{Uid: f.UID, Gid: f.GID}
	a.SetTimes(nil, &mtime, &mtime)
}

func (f *FS) fileAttr(a *fuse.Attr, size int64, mtime time.Time, writable bool) {
	a.Mode = fuse.S_IFREG | 0o444
	if writable && !f.ReadOnly {
		a.Mode = fuse.S_IFREG | 0o644
	}
	a.Mode &^= f.Umask
	a.Nlink = 1
	a.Size = uint64(size)
	a.Blocks = uint64(size+511) / 512
	a.Blksize = 1 << 20
	a.Owner = fuse.Owner{Uid: f.UID, Gid: f.GID}
	a.SetTimes(nil, &mtime, &mtime)
}
