package fs

import (
	"context"
	"io"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/backend"
)

// libFile is libraries/<library>/<item>/<file>.
type libFile struct {
	gofs.Inode
	fs     *FS
	itemID string
	name   string

	mu       sync.Mutex
	lastOpen string // source ID at the last open: same version keeps the page cache
}

var (
	_ gofs.NodeOpener    = (*libFile)(nil)
	_ gofs.NodeGetattrer = (*libFile)(nil)
)

func (f *libFile) path() string { return f.Path(nil) }

// current returns the item and the file as the catalog knows them now.
func (f *libFile) current(ctx context.Context) (backend.Item, backend.File, error) {
	it, files, err := f.fs.Catalog.Files(ctx, f.itemID)
	if err != nil {
		return it, backend.File{}, err
	}
	for _, file := range files {
		if file.Name == f.name {
			return it, file, nil
		}
	}
	return it, backend.File{}, backend.Errorf("library/item/file:list", it.Name+"/"+f.name, backend.ErrNotFound, "no such file")
}

func (f *libFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*libHandle); ok {
		// An open file keeps the version it opened.
		f.fs.fileAttr(&out.Attr, h.src.Size(), h.mtime, false)
		return 0
	}
	it, file, err := f.current(ctx)
	if err != nil {
		return toErrno(f.fs.Log, f.path(), err)
	}
	f.fs.fileAttr(&out.Attr, file.Size, it.Modified, false)
	return 0
}

func (f *libFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	it, file, err := f.current(ctx)
	if err != nil {
		return nil, 0, toErrno(f.fs.Log, f.path(), err)
	}
	src := f.fs.Downloads.Source(it, file)
	var fl uint32
	f.mu.Lock()
	if f.lastOpen == src.ID() {
		fl |= fuse.FOPEN_KEEP_CACHE // unchanged content version: keep the kernel's pages
	}
	f.lastOpen = src.ID()
	f.mu.Unlock()
	return &libHandle{f: f, src: src, mtime: it.Modified}, fl, 0
}

func (f *libFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// libHandle is an open library file: reads go through the block cache.
type libHandle struct {
	f     *libFile
	src   *backend.LibrarySource
	mtime time.Time
}

var _ gofs.FileReader = (*libHandle)(nil)

func (h *libHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.f.fs.Cache.ReadAt(ctx, h.src, dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(h.f.fs.Log, h.f.path(), err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}
