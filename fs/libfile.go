package fs

import (
	"context"
	"errors"
	"io"
	"path"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/remote"
)

// libFile is libraries/<library>/<item>/<file>.
type libFile struct {
	gofs.Inode
	fs     *FS
	itemID string
	libID  string
	sub    bool // in a subscribed library: read-only

	mu       sync.Mutex
	name     string // server-side name; changes when a staged file is renamed
	lastOpen string // source ID at the last open: same version keeps the page cache
	gate     ptGate // passthrough from a complete spool (passthrough.go)
}

var (
	_ gofs.NodeOpener    = (*libFile)(nil)
	_ gofs.NodeGetattrer = (*libFile)(nil)
	_ gofs.NodeSetattrer = (*libFile)(nil)
)

func (f *libFile) path() string { return f.Path(nil) }

func (f *libFile) fname() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.name
}

func (f *libFile) setName(n string) {
	f.mu.Lock()
	f.name = n
	f.mu.Unlock()
}

// current returns the item and the file as the catalog knows them now.
func (f *libFile) current(ctx context.Context) (remote.Item, remote.File, error) {
	name := f.fname()
	it, files, err := f.fs.Catalog.Files(ctx, f.itemID)
	if err != nil {
		return it, remote.File{}, err
	}
	for _, file := range files {
		if file.Name == name && !f.fs.Writes.isPending(f.itemID, name) {
			return it, file, nil
		}
	}
	return it, remote.File{}, remote.Errorf("library/item/file:list", it.Name+"/"+name, remote.ErrNotFound, "no such file")
}

func (f *libFile) writable() bool { return f.fs.writable(f.sub) == 0 }

func (f *libFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*libPTHandle); ok {
		fh = h.libHandle
	}
	switch h := fh.(type) {
	case *libHandle:
		// An open file keeps the version it opened.
		f.fs.fileAttr(&out.Attr, h.src.Size(), h.mtime, f.writable())
		return 0
	case *stagedHandle:
		size, mtime := h.sf.stat()
		f.fs.fileAttr(&out.Attr, size, mtime, f.writable())
		return 0
	}
	if sf := f.fs.Writes.find(f.itemID, f.fname()); sf != nil {
		size, mtime := sf.stat()
		f.fs.fileAttr(&out.Attr, size, mtime, f.writable())
		return 0
	}
	it, file, err := f.current(ctx)
	if err != nil {
		return toErrno(f.fs.Log, f.path(), err)
	}
	f.fs.fileAttr(&out.Attr, file.Size, f.fs.fileMtime(it, file), f.writable())
	return 0
}

// times is the store of per-file modification times (nil without writes).
func (f *FS) times() *fileTimes {
	if f.Writes == nil {
		return nil
	}
	return f.Writes.times
}

// serverLoader copies a server file's bytes (through the block cache's
// source) into a staged file.
func (f *FS) serverLoader(itm remote.Item, file remote.File) *loader {
	return &loader{mtime: f.fileMtime(itm, file), copy: func(ctx context.Context, dst io.Writer) error {
		body, _, err := f.Downloads.Source(itm, file, "").Open(ctx, 0, -1)
		if err != nil {
			return err
		}
		defer body.Close()
		_, err = io.Copy(dst, body)
		return err
	}}
}

func (f *libFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if isWrite(flags) {
		if errno := f.fs.writable(f.sub); errno != 0 {
			return nil, 0, errno
		}
		h, errno := f.openWrite(ctx, path.Dir(f.path()), flags)
		if errno != 0 {
			return nil, 0, errno
		}
		return h, fuse.FOPEN_DIRECT_IO, 0
	}
	if sf := f.fs.Writes.attach(f.itemID, f.fname()); sf != nil {
		// Being written here: read what is staged.
		return &stagedHandle{f: f, sf: sf}, fuse.FOPEN_DIRECT_IO, 0
	}
	it, file, err := f.current(ctx)
	if err != nil {
		return nil, 0, toErrno(f.fs.Log, f.path(), err)
	}
	src := f.fs.Downloads.Source(it, file, f.path())
	var fl uint32
	f.mu.Lock()
	if f.lastOpen == src.ID() {
		fl |= fuse.FOPEN_KEEP_CACHE // unchanged content version: keep the kernel's pages
	}
	f.lastOpen = src.ID()
	f.mu.Unlock()
	// A spool that holds the whole file (read once in stream mode) backs a
	// passthrough open: the kernel reads it with no request to us.
	spool, canBack := f.fs.Cache.Spooled(src)
	mode := f.gate.admit(src.ID(), canBack, canBack && !cache.InMemory(spool), f.fs.large(src))
	h := &libHandle{f: f, src: src, mtime: f.fs.fileMtime(it, file), mode: mode}
	if mode == ptBacking {
		return &libPTHandle{libHandle: h, backing: backing{file: spool, count: f.fs.countPassthrough}}, fl, 0
	}
	if spool != nil {
		spool.Close()
	}
	return h, mode.openFlags(fl), 0
}

// openWrite stages the file for writing: empty with O_TRUNC or for a file
// the server does not have, else filled with the current bytes first.
func (f *libFile) openWrite(ctx context.Context, itemPath string, flags uint32) (*stagedHandle, syscall.Errno) {
	w := f.fs.Writes
	name := f.fname()
	it := w.item(f.itemID, f.libID, itemPath)
	trunc := flags&syscall.O_TRUNC != 0
	onServer := false
	var load *loader
	// Asked even when a staged copy exists: that copy may be dropped (its
	// last handle released) before w.open runs, which then needs the
	// server's bytes; w.open uses them only for a fresh copy.
	staged := w.find(f.itemID, name) != nil
	itm, file, err := f.current(ctx)
	switch {
	case err == nil:
		onServer = true
		if !trunc {
			load = f.fs.serverLoader(itm, file)
		}
	case errors.Is(err, remote.ErrNotFound), staged:
	default:
		return nil, toErrno(f.fs.Log, f.path(), err)
	}
	sf, err := w.open(ctx, it, name, true, trunc, onServer, load)
	if err != nil {
		return nil, toErrno(f.fs.Log, f.path(), err)
	}
	return &stagedHandle{f: f, sf: sf, write: true, append: flags&syscall.O_APPEND != 0}, 0
}

// Setattr: a size change truncates the staged copy (staged and committed at
// once when no handle is open for writing); a modification time is kept by
// the mount (libtimes.go: for the staged file's commit, or for the server
// file's version); mode and owner succeed and change nothing, as the API
// has no such attributes.
func (f *libFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := f.fs.writable(f.sub); errno != 0 {
		return errno
	}

	if size, ok := in.GetSize(); ok {
		if h, ok := fh.(*stagedHandle); ok && h.write {
			if err := f.fs.Writes.truncate(ctx, h.sf, int64(size)); err != nil {
				return toErrno(f.fs.Log, f.path(), err)
			}
		} else {
			var fl uint32 = syscall.O_WRONLY
			if size == 0 {
				fl |= syscall.O_TRUNC
			}
			h, errno := f.openWrite(ctx, path.Dir(f.path()), fl)
			if errno != 0 {
				return errno
			}
			if err := f.fs.Writes.truncate(ctx, h.sf, int64(size)); err != nil {
				errno = toErrno(f.fs.Log, f.path(), err)
			}
			if errno == 0 {
				errno = h.Flush(ctx)
			}
			h.Release(ctx)
			if errno != 0 {
				return errno
			}
		}
	}
	if t, ok := in.GetMTime(); ok {
		f.setMtime(ctx, fh, t)
	}
	return f.Getattr(ctx, fh, out)
}

// setMtime keeps a time a writer set: on the staged copy while it has bytes
// to commit, else for the server file's current version.
func (f *libFile) setMtime(ctx context.Context, fh gofs.FileHandle, t time.Time) {
	sf := f.fs.Writes.find(f.itemID, f.fname())
	if h, ok := fh.(*stagedHandle); ok {
		sf = h.sf
	}
	if sf != nil && (sf.isDirty() || sf.localOnly) {
		sf.setMtime(t)
		return
	}
	if _, file, err := f.current(ctx); err == nil {
		f.fs.times().set(f.itemID, file, t)
	}
	if sf != nil {
		sf.setMtime(t)
	}
}

// libHandle is an open library file: reads go through the block cache.
type libHandle struct {
	f     *libFile
	src   cache.Source
	mtime time.Time
	mode  ptMode
}

// libPTHandle is an open library file the kernel reads from its complete
// spool (passthrough); reads reach (libHandle's) Read only if the kernel
// refused.
type libPTHandle struct {
	*libHandle
	backing
}

var (
	_ gofs.FileReader          = (*libHandle)(nil)
	_ gofs.FileFlusher         = (*libHandle)(nil)
	_ gofs.FileReleaser        = (*libHandle)(nil)
	_ gofs.FilePassthroughFder = (*libPTHandle)(nil)
	_ gofs.FileReleaser        = (*libPTHandle)(nil)
)

func (h *libHandle) Release(ctx context.Context) syscall.Errno {
	h.f.gate.release(h.mode)
	return 0
}

func (h *libPTHandle) Release(ctx context.Context) syscall.Errno {
	h.libHandle.Release(ctx)
	h.file.Close()
	return 0
}

func (h *libHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.mode == ptPages {
		h.f.gate.missed(h.src.ID())
	}
	// The reply is written from the cached block itself where it can be.
	b, release, err := h.f.fs.Cache.ReadShared(ctx, h.src, dest, off)
	if err != nil && err != io.EOF {
		release()
		return nil, toErrno(h.f.fs.Log, h.f.path(), err)
	}
	return shared(b, release), 0
}

// Flush is close(2): reads of this open still waiting for the network (the
// kernel's read-ahead, which a signal does not interrupt) end, and a
// transfer no one else waits for is cancelled. Not for a child's close of a
// file its parent still has open (parentHolds): the parent reads on.
func (h *libHandle) Flush(ctx context.Context) syscall.Errno {
	c := h.f.fs.Cache
	if c.Busy(h.src) && !parentHolds(ctx, h.f.fs.mnt.Load(), h.f.StableAttr().Ino) {
		c.Abandon(h.src)
	}
	return 0
}

// stagedHandle is a library file open for writing (or for reading while it
// is being written here): reads and writes go to the staged copy, close and
// fsync commit it.
type stagedHandle struct {
	f             *libFile
	sf            *staged
	write, append bool
	once          sync.Once
}

var (
	_ gofs.FileReader   = (*stagedHandle)(nil)
	_ gofs.FileWriter   = (*stagedHandle)(nil)
	_ gofs.FileFlusher  = (*stagedHandle)(nil)
	_ gofs.FileFsyncer  = (*stagedHandle)(nil)
	_ gofs.FileReleaser = (*stagedHandle)(nil)
)

func (h *stagedHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.sf.mu.Lock()
	n, streaming, err := h.sf.readStreaming(dest, off)
	dropped := h.sf.dropped
	h.sf.mu.Unlock()
	if streaming {
		if err != nil {
			return nil, toErrno(h.f.fs.Log, h.f.path(), err)
		}
		return data(dest[:n]), 0
	}
	if off < dropped {
		return nil, toErrno(h.f.fs.Log, h.f.path(), remote.Errorf("read", h.f.fname(), remote.ErrIO,
			"bytes before %d were uploaded while the file was written and are no longer here (read it again after its close)", dropped))
	}
	n, err = h.sf.f.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(h.f.fs.Log, h.f.path(), err)
	}
	return data(dest[:n]), 0
}

func (h *stagedHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write {
		return 0, syscall.EBADF
	}
	n, err := h.f.fs.Writes.write(ctx, h.sf, data, off, h.append, h.f.StableAttr().Ino)
	if err != nil {
		return uint32(n), toErrno(h.f.fs.Log, h.f.path(), err)
	}
	return uint32(n), 0
}

// Flush is every close(): FUSE cannot tell the last one, so a close of a
// handle that wrote commits the unsaved bytes and waits for the outcome,
// unless the closing process still holds another writable descriptor of
// the file (bash's dup2 and close, fdpeers.go): its last close commits.
func (h *stagedHandle) Flush(ctx context.Context) syscall.Errno {
	if !h.write {
		return 0
	}
	if callerKeepsWriter(ctx, h.f.fs.mnt.Load(), h.f.StableAttr().Ino) {
		return 0
	}
	return h.commit(ctx)
}

// commit commits the unsaved bytes now (close, fsync).
func (h *stagedHandle) commit(ctx context.Context) syscall.Errno {
	committed, errno := h.f.fs.Writes.flush(ctx, h.sf)
	if committed || errno == syscall.EIO {
		// The item has a new content version, so its files have new inode
		// numbers: drop the kernel's entry before close returns, so that the
		// next open looks up the new inode (size and pages of the new
		// version) while readers of the old one keep theirs. After a failed
		// commit the same: the size the kernel learnt from the writes is
		// not the server's.
		if name, parent := h.f.Parent(); parent != nil {
			parent.NotifyEntry(name)
		}
	}
	return errno
}

func (h *stagedHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if !h.write {
		return 0
	}
	if h.sf.streaming() {
		return h.f.fs.Writes.syncStream(ctx, h.sf)
	}
	return h.commit(ctx)
}

func (h *stagedHandle) Release(ctx context.Context) syscall.Errno {
	h.once.Do(func() { h.f.fs.Writes.release(h.sf, h.write) })
	return 0
}
