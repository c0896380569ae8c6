package fs

import (
	"context"
	"io"
	"time"

	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/remote"
)

// The interfaces below are all fs asks of the server side: cmd wires the
// backend's clients into them, tests wire fakes. Failures are *remote.Error
// values of a remote.Err* kind, which errno.go maps.

// Catalog lists libraries, items and files (cached: Invalidate drops what a
// change made stale).
type Catalog interface {
	Libraries(ctx context.Context) ([]remote.Library, error)
	Items(ctx context.Context, libID string) ([]remote.Item, error)
	Item(ctx context.Context, id string, refresh bool) (remote.Item, error)
	Files(ctx context.Context, itemID string) (remote.Item, []remote.File, error)
	Invalidate(libID, itemID string)
}

// Downloads reads library files.
type Downloads interface {
	// Source is the bytes of one file of one item version; origin is the
	// file's path in the mount, shown by `vspherefs status`.
	Source(item remote.Item, f remote.File, origin string) cache.Source
}

// LibraryWriter changes libraries: items and libraries made, renamed and
// removed, and files committed whole or streamed.
type LibraryWriter interface {
	CreateLibrary(ctx context.Context, name, datastoreID string) (string, error)
	DeleteLibrary(ctx context.Context, libID string) error
	RenameLibrary(ctx context.Context, libID, name string) error
	CreateItem(ctx context.Context, libID, name, typ string) (string, error)
	DeleteItem(ctx context.Context, itemID string) error
	RenameItem(ctx context.Context, itemID, name string) error
	// Commit puts files into an item and removes the named ones, in one
	// update session: all of it or none.
	Commit(ctx context.Context, itemID string, files []remote.Staged, remove []string) error
	// StartStream opens an update session of one file whose PUT reads
	// body as it is written (streamed uploads): to io.EOF, then Finish
	// commits it; an error from body fails it.
	StartStream(ctx context.Context, itemID, name string, body io.Reader) (Stream, error)
}

// Stream is one file uploaded as it is written (streamed uploads).
type Stream interface {
	Done() <-chan struct{} // closed when the PUT has ended
	Err() error            // the PUT's failure, once Done
	Finish(ctx context.Context, remove []string) error
	Abort(ctx context.Context)
}

// Guests lists the VMs and reaches each one's guest files.
type Guests interface {
	VMs(ctx context.Context) ([]remote.VM, error)
	VM(vm remote.VM) Guest
}

// Guest is one VM's guest file system. Paths are guest paths ("/etc/x",
// "C:/Users" on Windows).
type Guest interface {
	ID() string    // the VM's managed object id: stable across renames
	Name() string  // the VM's name
	MoRef() string // shown as user.vsphere.vm
	Windows() bool
	Dir(ctx context.Context, dir string) ([]remote.GuestStat, error)
	Lookup(ctx context.Context, dir, name string) (remote.GuestStat, error)
	Stat(ctx context.Context, p string) (remote.GuestStat, error)
	CanCreate(p string) error // nil if p may be made (not every name may on Windows)
	Mkdir(ctx context.Context, p string, mode uint32) (remote.GuestStat, error)
	Rmdir(ctx context.Context, p string) error
	Remove(ctx context.Context, p string) error
	MoveFile(ctx context.Context, src, dst string, overwrite bool) error
	MoveDir(ctx context.Context, src, dst string) error
	Chattr(ctx context.Context, p string, a remote.GuestAttr) error
	// Upload replaces (or, replace false, creates) p with size bytes of r
	// and sets a; it returns the file's attributes after.
	Upload(ctx context.Context, p string, r io.ReadSeeker, size int64, a remote.GuestAttr, replace bool) (remote.GuestStat, error)
	// Source is the bytes of p as last listed (size and mtime key the cache).
	Source(p string, size int64, mtime time.Time, origin string) cache.Source
}

// Exports runs VM exports into a spool and serves their files.
type Exports interface {
	VMs(ctx context.Context) ([]remote.ExportVM, error)
	Check(ctx context.Context, t remote.ExportTarget) error
	// Names are the package's file names and its number of disks.
	Names(ctx context.Context, t remote.ExportTarget) ([]string, int, error)
	File(ctx context.Context, t remote.ExportTarget, match remote.FileMatch) (remote.SpooledFile, error)
	FileReady(ctx context.Context, t remote.ExportTarget, match remote.FileMatch) (remote.SpooledFile, bool)
	CreateSnapshot(ctx context.Context, vm remote.Ref, name string) error
	RemoveSnapshot(ctx context.Context, t remote.ExportTarget) error
}

// Spaces are datastore figures for statfs.
type Spaces interface {
	Total(ctx context.Context) (remote.Space, error)
	Datastore(ctx context.Context, id string) (remote.Space, error)
}

// DiskImage is the raw image inside a streamOptimized VMDK: zeros where it
// has no grains.
type DiskImage interface {
	io.ReaderAt
	Allocated() [][2]int64 // [offset, length] of the extents that have grains
}

// OpenDiskImage decodes the streamOptimized VMDK r of size bytes.
type OpenDiskImage func(r io.ReaderAt, size int64) (DiskImage, error)
