package fs

import (
	"context"
	"io"
	"path"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/backend"
)

// guestFile is a regular file in a guest. Reads go through the block cache
// and its spool: each stream the cache needs is one
// InitiateFileTransferFromGuest and one GET, keyed on size and mtime.
type guestFile struct {
	gofs.Inode
	fs   *FS
	vm   *backend.GuestVM
	path string

	mu       sync.Mutex
	lastOpen string // source ID at the last open: same version keeps the page cache
}

var (
	_ gofs.NodeOpener    = (*guestFile)(nil)
	_ gofs.NodeGetattrer = (*guestFile)(nil)
)

func (f *guestFile) mountPath() string { return f.Path(nil) }

func (f *guestFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*guestHandle); ok {
		f.fs.guestAttr(&out.Attr, h.stat) // an open file keeps the version it opened
		return 0
	}
	return f.fs.guestGetattr(ctx, f.vm, f.path, f.mountPath(), &out.Attr)
}

func (f *guestFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS // guest writes are not implemented yet
	}
	s, err := f.vm.Lookup(ctx, path.Dir(f.path), path.Base(f.path))
	if err != nil {
		return nil, 0, toErrno(f.fs.Log, f.mountPath(), err)
	}
	src := f.vm.Source(f.path, s.Size, s.Mtime)
	var fl uint32
	f.mu.Lock()
	if f.lastOpen == src.ID() {
		fl |= fuse.FOPEN_KEEP_CACHE // unchanged size and mtime: keep the kernel's pages
	}
	f.lastOpen = src.ID()
	f.mu.Unlock()
	return &guestHandle{f: f, src: src, stat: s}, fl, 0
}

// guestHandle is an open guest file.
type guestHandle struct {
	f    *guestFile
	src  *backend.GuestSource
	stat backend.GuestStat
}

var _ gofs.FileReader = (*guestHandle)(nil)

func (h *guestHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.f.fs.Cache.ReadAt(ctx, h.src, dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(h.f.fs.Log, h.f.mountPath(), err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// guestLink is a symlink in a guest; readlink answers from the listing's
// symlinkTarget.
type guestLink struct {
	gofs.Inode
	fs   *FS
	vm   *backend.GuestVM
	path string
}

var (
	_ gofs.NodeReadlinker = (*guestLink)(nil)
	_ gofs.NodeGetattrer  = (*guestLink)(nil)
)

func (l *guestLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	s, err := l.vm.Lookup(ctx, path.Dir(l.path), path.Base(l.path))
	if err != nil {
		return nil, toErrno(l.fs.Log, l.Path(nil), err)
	}
	return []byte(s.Target), 0
}

func (l *guestLink) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return l.fs.guestGetattr(ctx, l.vm, l.path, l.Path(nil), &out.Attr)
}
