package fs

import (
	"context"
	"io"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/remote"
)

// guestFile is a regular file in a guest. Reads go through the block cache
// and its spool: each stream the cache needs is one
// InitiateFileTransferFromGuest and one GET, keyed on size and mtime.
// Writes go to a stage (guestwrite.go), committed on close.
type guestFile struct {
	guestNode

	mu       sync.Mutex
	st       *stage // while open for writing
	unlinked bool   // removed while open: commits go nowhere
	lastOpen string // source ID at the last open: same version keeps the page cache
	gate     ptGate // passthrough from a complete spool (passthrough.go)
	// busy is non-nil while one of the file's own network calls runs with
	// mu released (outsideLocked: the load of its bytes into the stage, a
	// Lookup or Chattr of an open for writing or a setattr); it is closed
	// when the call ends. Changes to the file wait for it (idleLocked);
	// stat does not.
	busy chan struct{}
}

var (
	_ gofs.NodeOpener    = (*guestFile)(nil)
	_ gofs.NodeGetattrer = (*guestFile)(nil)
	_ gofs.NodeSetattrer = (*guestFile)(nil)
)

// stat is the file as the guest lists it, or as staged.
func (f *guestFile) stat(ctx context.Context) (remote.GuestStat, error) {
	f.mu.Lock()
	if f.st != nil {
		defer f.mu.Unlock()
		return f.st.stat(), nil
	}
	f.mu.Unlock()
	p := f.guestPath()
	return f.vm.Lookup(ctx, path.Dir(p), path.Base(p))
}

// Getattr answers with the file as it is now (staged, or as the guest
// lists it), whatever the handle: go-fuse hands a stat(2) of the path any
// open handle of the inode, and the kernel keeps one size per inode, so an
// old reader's version would show (and cut reads short) for everyone.
func (f *guestFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	s, err := f.stat(ctx)
	if err != nil {
		return toErrno(f.fs.Log, f.mountPath(), err)
	}
	f.fs.guestAttr(&out.Attr, s)
	return 0
}

func isWrite(flags uint32) bool {
	return flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0
}

func (f *guestFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if isWrite(flags) {
		if f.fs.ReadOnly {
			return nil, 0, syscall.EROFS
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.st == nil && !f.idleLocked(ctx) { // one Lookup at a time
			return nil, 0, syscall.EINTR
		}
		if f.st == nil {
			s, err := f.lookupLocked(ctx)
			if err != nil {
				return nil, 0, toErrno(f.fs.Log, f.mountPath(), err)
			}
			if f.st == nil && f.vm.Windows() && s.Mode&0o200 == 0 { // (a create may have staged it meanwhile)
				return nil, 0, syscall.EACCES // read-only: Windows writes it for nobody, not even root
			}
			if err := f.stageLocked(s, true); err != nil {
				return nil, 0, toErrno(f.fs.Log, f.mountPath(), err)
			}
		} else {
			f.st.writers++
		}
		if flags&syscall.O_TRUNC != 0 {
			if !f.idleLocked(ctx) {
				f.releaseLocked()
				return nil, 0, syscall.EINTR
			}
			if err := f.truncateLocked(ctx, 0); err != nil {
				f.releaseLocked()
				return nil, 0, toErrno(f.fs.Log, f.mountPath(), err)
			}
		}
		f.lastOpen = ""
		h := &guestHandle{f: f, write: true, append: flags&syscall.O_APPEND != 0, mode: f.gate.admit("", false, false, false)}
		return h, h.mode.openFlags(0), 0
	}
	f.mu.Lock()
	if f.st != nil {
		// Staged: the handle follows the file (the stage, then whatever
		// the guest has once the stage is gone), not a version of its own.
		defer f.mu.Unlock()
		f.lastOpen = ""
		h := &guestHandle{f: f, mode: f.gate.admit("", false, false, false)}
		return h, h.mode.openFlags(0), 0
	}
	f.mu.Unlock()
	src, err := f.source(ctx)
	if err != nil {
		return nil, 0, toErrno(f.fs.Log, f.mountPath(), err)
	}
	// A spool that holds the whole version (read once) backs a
	// passthrough open, as for library files, but on read-only mounts
	// only: while an inode has a backing file, the kernel refuses every
	// open of it that is not passthrough too (EINVAL), and a writer's
	// cannot be (it would write into the spool), so a reader would lock
	// writers out. So only there is a large file's cold read kept out of
	// the page cache: elsewhere its re-reads would have no passthrough to
	// take them.
	var spool *os.File
	canBack := false
	if f.fs.ReadOnly {
		spool, canBack = f.fs.Cache.Spooled(src)
	}
	var fl uint32
	f.mu.Lock()
	if f.lastOpen == src.ID() && f.st == nil {
		fl |= fuse.FOPEN_KEEP_CACHE // unchanged size and mtime: keep the kernel's pages
	}
	f.lastOpen = src.ID()
	h := &guestHandle{f: f, src: src, mode: f.gate.admit(src.ID(), canBack && f.st == nil, canBack && !cache.InMemory(spool), f.fs.ReadOnly && f.fs.large(src))}
	f.mu.Unlock()
	if h.mode == ptBacking {
		return &guestPTHandle{guestHandle: h, backing: backing{file: spool, count: f.fs.countPassthrough}}, fl, 0
	}
	if spool != nil {
		spool.Close()
	}
	return h, h.mode.openFlags(fl), 0
}

// source is the guest's version of the file now, as a cache source.
func (f *guestFile) source(ctx context.Context) (cache.Source, error) {
	p := f.guestPath()
	s, err := f.vm.Lookup(ctx, path.Dir(p), path.Base(p))
	if err != nil {
		return nil, err
	}
	return f.vm.Source(p, s.Size, s.Mtime, f.mountPath()), nil
}

// Setattr: truncation is staged (or, on a file nobody has open for
// writing, staged and committed at once); mode, owner and times are applied
// at the commit when the file has unsaved bytes, else at once with one
// ChangeFileAttributesInGuest.
func (f *guestFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if f.fs.ReadOnly {
		return syscall.EROFS
	}
	if errno := f.mode0000(in); errno != 0 {
		return errno
	}
	a, nowM, _ := setattrAttr(in)
	size, truncating := in.GetSize()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.idleLocked(ctx) { // a commit reads the stage: change it after
		return syscall.EINTR
	}
	if truncating {
		temporary := f.st == nil
		if temporary {
			s, err := f.lookupLocked(ctx)
			if err != nil {
				return toErrno(f.fs.Log, f.mountPath(), err)
			}
			temporary = f.st == nil // a create may have staged it meanwhile
			if err := f.stageLocked(s, true); err != nil {
				return toErrno(f.fs.Log, f.mountPath(), err)
			}
			defer f.releaseLocked()
		}
		if err := f.truncateLocked(ctx, int64(size)); err != nil {
			return toErrno(f.fs.Log, f.mountPath(), err)
		}
		if nowM {
			a.Mtime = nil // the commit's own time
		}
		f.mergeAttrLocked(a)
		if temporary {
			if errno := f.commitLocked(ctx); errno != 0 {
				return errno
			}
		}
	} else if f.st != nil && f.st.dirty {
		if nowM {
			a.Mtime = nil
			f.st.attr.Mtime = nil
			f.st.mtime = time.Now()
		}
		f.mergeAttrLocked(a)
	} else if errno := f.chattrLocked(ctx, a); errno != 0 {
		return errno
	}
	var s remote.GuestStat
	if f.st != nil {
		s = f.st.stat()
	} else {
		var err error
		if !f.idleLocked(ctx) {
			return syscall.EINTR
		}
		if s, err = f.lookupLocked(ctx); err != nil {
			return toErrno(f.fs.Log, f.mountPath(), err)
		}
		if f.st != nil { // opened for writing meanwhile
			s = f.st.stat()
		}
	}
	f.fs.guestAttr(&out.Attr, s)
	return 0
}

func (f *guestFile) mergeAttrLocked(a remote.GuestAttr) {
	f.st.failed = false
	st := &f.st.attr
	if a.Mode != nil {
		st.Mode = a.Mode
	}
	if a.UID != nil {
		st.UID = a.UID
	}
	if a.GID != nil {
		st.GID = a.GID
	}
	if a.Mtime != nil {
		st.Mtime = a.Mtime
	}
	if a.Atime != nil {
		st.Atime = a.Atime
	}
}

// chattrLocked applies attributes to the guest's file at once, skipping
// what it has already (rsync and cp chown and chmod to what is there).
// Both calls run with f.mu released (outsideLocked); called idle.
func (f *guestFile) chattrLocked(ctx context.Context, a remote.GuestAttr) syscall.Errno {
	p := f.guestPath()
	var err error
	f.outsideLocked(func() {
		var cur remote.GuestStat
		if cur, err = f.vm.Lookup(ctx, path.Dir(p), path.Base(p)); err == nil {
			a = unchangedDropped(a, cur)
		}
		err = f.vm.Chattr(ctx, p, a)
	})
	if err != nil {
		return toErrno(f.fs.Log, f.mountPath(), err)
	}
	if f.st != nil { // open for writing, nothing unsaved: keep the stage's view true
		f.st.base = mergedStat(f.st.base, a)
	}
	return 0
}

// lookupLocked is the guest's listing of the file, looked up with f.mu
// released (outsideLocked); called idle.
func (f *guestFile) lookupLocked(ctx context.Context) (s remote.GuestStat, err error) {
	p := f.guestPath()
	f.outsideLocked(func() { s, err = f.vm.Lookup(ctx, path.Dir(p), path.Base(p)) })
	return s, err
}

// unchangedDropped is a without what cur has already.
func unchangedDropped(a remote.GuestAttr, cur remote.GuestStat) remote.GuestAttr {
	if a.Mode != nil && *a.Mode == cur.Mode {
		a.Mode = nil
	}
	if a.UID != nil && int64(*a.UID) == cur.UID {
		a.UID = nil
	}
	if a.GID != nil && int64(*a.GID) == cur.GID {
		a.GID = nil
	}
	return a
}

func mergedStat(s remote.GuestStat, a remote.GuestAttr) remote.GuestStat {
	st := stage{stagedFile: stagedFile{size: s.Size}, base: s, attr: a}
	return st.stat()
}

// guestHandle is an open guest file: read-only handles read the version
// they opened through the cache; while the file is staged, every handle
// reads the staged bytes.
type guestHandle struct {
	f *guestFile
	// src is a read-only handle's version: the one opened, or for a
	// handle opened while the file was staged (nil until then) the
	// guest's, once the stage is gone (follow). Guarded by f.mu. Its
	// reads keep it; stat shows the file as it is now (Getattr).
	src    cache.Source
	write  bool
	append bool
	mode   ptMode // how the open is served (passthrough.go)
}

// guestPTHandle is an open of a guest file on a read-only mount that the
// kernel reads from its complete spool (passthrough); reads reach
// (guestHandle's) Read only if the kernel refused.
type guestPTHandle struct {
	*guestHandle
	backing
}

var (
	_ gofs.FilePassthroughFder = (*guestPTHandle)(nil)
	_ gofs.FileReleaser        = (*guestPTHandle)(nil)
)

// follow gives a handle opened while the file was staged the version the
// guest has now, looked up once (without f.mu held), and keeps it.
func (h *guestHandle) follow(ctx context.Context) (cache.Source, error) {
	src, err := h.f.source(ctx)
	if err != nil {
		return nil, err
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if h.src == nil {
		h.src = src
	}
	return h.src, nil
}

var (
	_ gofs.FileReader   = (*guestHandle)(nil)
	_ gofs.FileWriter   = (*guestHandle)(nil)
	_ gofs.FileFlusher  = (*guestHandle)(nil)
	_ gofs.FileFsyncer  = (*guestHandle)(nil)
	_ gofs.FileReleaser = (*guestHandle)(nil)
)

func (h *guestHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := h.f
	f.mu.Lock()
	src := h.src
	if st := f.st; st != nil {
		if h.write || st.loaded && !st.refused() {
			defer f.mu.Unlock()
			n, err := f.readLocked(ctx, dest, off)
			if err != nil {
				return nil, toErrno(f.fs.Log, f.mountPath(), err)
			}
			return data(dest[:n]), 0
		}
		src = f.vm.Source(f.guestPath(), st.base.Size, st.base.Mtime, f.mountPath()) // the guest's version
	}
	f.mu.Unlock()
	if src == nil { // opened while staged, and the stage is gone
		var err error
		if src, err = h.follow(ctx); err != nil {
			return nil, toErrno(f.fs.Log, f.mountPath(), err)
		}
	}
	if h.mode == ptPages {
		f.gate.missed(src.ID())
	}
	// The reply is written from the cached block itself where it can be
	// (no copy into dest), as for library files.
	b, release, err := f.fs.Cache.ReadShared(ctx, src, dest, off)
	if err != nil && err != io.EOF {
		release()
		return nil, toErrno(f.fs.Log, f.mountPath(), err)
	}
	return shared(b, release), 0
}

func (h *guestHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write {
		return 0, syscall.EBADF
	}
	f := h.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.idleLocked(ctx) { // a commit reads the stage: write after it
		return 0, syscall.EINTR
	}
	if err := f.writeLocked(ctx, data, off, h.append); err != nil {
		return 0, toErrno(f.fs.Log, f.mountPath(), err)
	}
	return uint32(len(data)), 0
}

// Flush is close(2): the commit, for a handle that may have written.
func (h *guestHandle) Flush(ctx context.Context) syscall.Errno {
	if !h.write {
		h.f.mu.Lock()
		src := h.src
		h.f.mu.Unlock()
		if src != nil && h.f.fs.Cache.Busy(src) && !parentHolds(ctx, h.f.fs.mnt.Load(), h.f.StableAttr().Ino) {
			h.f.fs.Cache.Abandon(src) // reads still waiting end (libHandle.Flush)
		}
		return 0
	}
	if pid, ok := requester(ctx); ok && parentKeepsWriter(pid, h.f.fs.mnt.Load(), h.f.StableAttr().Ino) {
		// A child's close (its exec's) of a file its parent is writing:
		// the parent's close commits. (Each close of the writer's own
		// descriptors commits, as it always has for guest files.)
		return 0
	}
	return h.commit(ctx)
}

func (h *guestHandle) commit(ctx context.Context) syscall.Errno {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.f.commitLocked(ctx)
}

// Fsync commits now, from a process that holds the file open.
func (h *guestHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if !h.write {
		return 0
	}
	return h.commit(ctx)
}

func (h *guestHandle) Release(ctx context.Context) syscall.Errno {
	if h.write {
		h.f.mu.Lock()
		if st := h.f.st; st != nil && st.writers == 1 && st.dirty && !st.failed {
			// Changed after the last close(2) (a truncate(2) or chmod of the
			// path between the close and this release, staged for a close
			// that came before it): committed now, not dropped with the stage.
			h.f.commitLocked(context.Background())
		}
		h.f.releaseLocked()
		h.f.mu.Unlock()
	}
	h.f.gate.release(h.mode)
	return 0
}

func (h *guestPTHandle) Release(ctx context.Context) syscall.Errno {
	h.guestHandle.Release(ctx)
	h.file.Close()
	return 0
}

// guestLink is a symlink in a guest; readlink answers from the listing's
// symlinkTarget.
type guestLink struct {
	guestNode
}

var (
	_ gofs.NodeReadlinker = (*guestLink)(nil)
	_ gofs.NodeGetattrer  = (*guestLink)(nil)
)

func (l *guestLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	p := l.guestPath()
	s, err := l.vm.Lookup(ctx, path.Dir(p), path.Base(p))
	if err != nil {
		return nil, toErrno(l.fs.Log, l.mountPath(), err)
	}
	return []byte(s.Target), 0
}

func (l *guestLink) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return l.fs.guestGetattr(ctx, l.vm, l.guestPath(), l.mountPath(), &out.Attr)
}
