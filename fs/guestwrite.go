package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/remote"
)

// stage is a guest file's local copy while it is open for writing: its
// stagedFile (stagedfile.go; dirty: bytes the guest does not have; mtime:
// the last write, shown until the commit), committed to the guest on close
// and on fsync when the guest does not have its bytes. It belongs to the
// guestFile node, so every handle of the file sees the same bytes. All of
// it is guarded by the node's mu; its bytes are loaded (loadLocked) and
// uploaded (commitLocked) with mu released, while the file is busy or
// committing.
type stage struct {
	stagedFile
	loaded  bool             // f holds the guest's bytes (or needs none: new, or truncated to 0)
	exists  bool             // the guest has the file (false for a created file before its first commit)
	attr    remote.GuestAttr // what the writer set while dirty: applied at the commit
	writers int              // open write handles
	base    remote.GuestStat // the guest's attributes when staged, or after the last commit
	// failed: the last commit failed and nothing changed since. A file the
	// guest has then shows the guest's version (refused: stat, reads of
	// read-only handles), not bytes the guest refused; writers' handles
	// still read the stage, and the next close commits it again.
	failed bool
	// committing is non-nil while a commit uploads the staged bytes (without
	// f.mu held); it is closed when the commit ends. Changes to the stage
	// wait for it (idleLocked).
	committing chan struct{}
}

// stageLocked gives the file a stage, based on the guest's attributes base
// (exists) or on those of a file being created, and counts one more writer.
func (f *guestFile) stageLocked(base remote.GuestStat, exists bool) error {
	if f.st == nil {
		var origin recovered                        // for a rescue if the mount dies
		if _, parent := f.Parent(); parent != nil { // a created node is not in the tree yet: Create writes it
			origin = recovered{Tree: "vms", Origin: f.mountPath()}
		}
		file, err := newStagedFile(f.fs.stagingDir(), "w-", origin)
		if err != nil {
			return err
		}
		file.size = base.Size
		f.st = &stage{stagedFile: file, loaded: base.Size == 0, exists: exists, base: base}
		if !exists {
			f.st.dirty = true // a created file is committed even if nothing is written
		}
	}
	f.st.writers++
	return nil
}

// releaseLocked drops one writer; the last one removes the staging file.
func (f *guestFile) releaseLocked() {
	st := f.st
	if st == nil {
		return
	}
	if st.writers--; st.writers > 0 || st.committing != nil || f.busy != nil {
		return // a commit or call running drops the stage when it ends
	}
	st.remove()
	f.st = nil
}

// loadLocked reads the guest's bytes into the stage, for writes that keep
// some of them (O_APPEND, O_RDWR, partial rewrites, truncation to a
// non-zero size). They come through the block cache: one transfer, run
// with f.mu released (the file busy meanwhile, so that changes to the
// stage wait for it and stat answers from the metadata). It waits for a
// busy file's call first; EINTR if the caller dies meanwhile.
func (f *guestFile) loadLocked(ctx context.Context) error {
	for {
		st := f.st
		if st == nil {
			return os.ErrClosed
		}
		if st.loaded {
			return nil
		}
		if f.busy != nil {
			ch := f.busy
			f.mu.Unlock()
			ok := awaitOrDie(ctx, ch)
			f.mu.Lock()
			if !ok {
				return syscall.EINTR
			}
			continue
		}
		src := f.vm.Source(f.guestPath(), st.base.Size, st.base.Mtime, f.mountPath())
		size, file := st.base.Size, st.f
		var err error
		f.outsideLocked(func() { err = f.fs.loadInto(ctx, src, file, size) })
		if err != nil {
			return err
		}
		st.loaded = true
	}
}

// loadInto copies src's size bytes into file.
func (f *FS) loadInto(ctx context.Context, src cache.Source, file *os.File, size int64) error {
	buf := make([]byte, f.Cache.BlockSize())
	for off := int64(0); off < size; {
		n, err := f.Cache.ReadAt(ctx, src, buf, off)
		if n > 0 {
			if _, werr := file.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err != nil && !(err == io.EOF && off >= size) {
			return err
		}
		if n == 0 && err == nil {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

// outsideLocked runs fn, one of the file's own network calls, with f.mu
// released and the file busy: changes to the file wait for it
// (idleLocked), stat and reads of other versions do not. Called idle (no
// call running); f.mu is held again when it returns. A stage whose last
// writer was released meanwhile is dropped then.
func (f *guestFile) outsideLocked(fn func()) {
	ch := make(chan struct{})
	f.busy = ch
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.busy = nil
		close(ch)
		if st := f.st; st != nil && st.writers == 0 && st.committing == nil {
			st.writers = 1
			f.releaseLocked()
		}
	}()
	fn()
}

func (f *guestFile) writeLocked(ctx context.Context, data []byte, off int64, appending bool) error {
	st := f.st
	if err := f.loadLocked(ctx); err != nil {
		return err
	}
	if appending {
		off = st.size
	}
	if _, err := st.writeAt(data, off); err != nil {
		return err
	}
	st.failed = false
	st.attr.Mtime = nil // a write after utimens sets the mtime again, as POSIX has it
	return nil
}

func (f *guestFile) readLocked(ctx context.Context, dest []byte, off int64) (int, error) {
	if err := f.loadLocked(ctx); err != nil {
		return 0, err
	}
	return f.st.readAt(dest, off)
}

func (f *guestFile) truncateLocked(ctx context.Context, size int64) error {
	st := f.st
	if size == 0 {
		st.loaded = true
	} else if err := f.loadLocked(ctx); err != nil {
		return err
	}
	st.failed = false
	return st.truncate(size)
}

// idleLocked waits (f.mu released meanwhile) until no commit of the file
// runs and no call of its own (busy), so that the stage and the guest's
// file can change; false if the caller is dying.
func (f *guestFile) idleLocked(ctx context.Context) bool {
	for {
		var ch chan struct{}
		switch {
		case f.busy != nil:
			ch = f.busy
		case f.st != nil && f.st.committing != nil:
			ch = f.st.committing
		default:
			return true
		}
		f.mu.Unlock()
		ok := awaitOrDie(ctx, ch)
		f.mu.Lock()
		if !ok {
			return false
		}
	}
}

// commitLocked gives the guest the staged bytes: Upload (temporary name,
// PUT, MoveFileInGuest over the target, for a file the guest has), then the
// mode and times the writer set. A failure leaves the guest's file as it
// was, keeps the bytes in <cache-dir>/recovery, logs one line and is EIO.
//
// The upload runs without f.mu held (it is released and taken again), and
// goes on by itself if the caller dies meanwhile (EINTR then): a half-done
// commit would only fail and leave the bytes in recovery/. Its progress
// deadline bounds it. The guest path is the node's own (guestPath), taken
// when the commit starts.
func (f *guestFile) commitLocked(ctx context.Context) syscall.Errno {
	if !f.idleLocked(ctx) {
		return syscall.EINTR
	}
	st := f.st
	if st == nil || !st.dirty {
		return 0
	}
	if f.unlinked { // written after rm: the bytes go nowhere, as on a local disk
		st.dirty = false
		return 0
	}
	bg := context.WithoutCancel(ctx)
	if !st.loaded { // a created file is loaded; others only if written
		if err := f.loadLocked(bg); err != nil {
			return f.commitFailedStage(st, err)
		}
		// f.mu was released for the load: begin again (the file may
		// have been committed, unlinked or renamed meanwhile).
		return f.commitLocked(ctx)
	}
	a := st.attr
	if a.Mode == nil && st.base.Mode != 0 { // a created file's mode, or the replaced file's
		m := st.base.Mode
		a.Mode = &m
	}
	p, body, exists := f.guestPath(), st.section(), st.exists
	bg = withOrigin(bg, f.mountPath())
	done := make(chan struct{})
	st.committing = done
	var errno syscall.Errno
	end := f.fs.commits.start()
	f.mu.Unlock()
	go func() {
		defer end()
		s, err := f.vm.Upload(bg, p, body, body.Size(), a, exists)
		f.mu.Lock()
		defer f.mu.Unlock()
		if err != nil {
			errno = f.commitFailedStage(st, err)
		} else {
			st.base, st.exists, st.dirty, st.attr, st.failed = s, true, false, remote.GuestAttr{}, false
		}
		st.committing = nil
		close(done)
		if st.writers == 0 && f.st == st { // every handle was released meanwhile
			st.writers = 1
			f.releaseLocked()
		}
	}()
	ok := awaitOrDie(ctx, done)
	f.mu.Lock()
	if !ok {
		f.fs.Log.Warn("close interrupted: the writer is gone; the commit goes on and is logged when it ends", "path", f.mountPath())
		return syscall.EINTR
	}
	return errno
}

// commitFailedStage keeps st's bytes in <cache-dir>/recovery and logs one
// line naming the path, the call and the fault.
func (f *guestFile) commitFailedStage(st *stage, err error) syscall.Errno {
	call, fault := "", err.Error()
	var be *remote.Error
	if errors.As(err, &be) {
		call, fault = be.Call, be.Fault
	}
	kept := f.recover(st, call, fault)
	st.failed = true
	f.fs.Log.Error("commit failed: "+syscall.EIO.Error(), "path", f.mountPath(), "call", call, "fault", fault, "kept", kept)
	return syscall.EIO
}

// recover copies st's bytes to recovery/vms/<vm>/<guest path> (see
// recovery.go) and returns where.
func (f *guestFile) recover(st *stage, call, fault string) string {
	return keptOrWhy(st.keep(f.fs.recoveryDir(), st.size,
		recovered{Tree: "vms", Origin: f.mountPath(), Reason: "commit failed", Call: call, Fault: fault}))
}

// stat is what the file is while staged: the guest's attributes with
// the staged size, the last write's time and what the writer set (the
// guest's own once it refused them).
func (st *stage) stat() remote.GuestStat {
	s := st.base
	if st.refused() {
		return s
	}
	s.Size = st.size
	if st.dirty && !st.mtime.IsZero() {
		s.Mtime = st.mtime
	}
	st.attr.Apply(&s)
	return s
}

// refused says whether the guest refused the staged bytes (the last commit
// failed) over a file it has, whose version is shown meanwhile.
func (st *stage) refused() bool { return st.failed && st.exists }

// setattrAttr reads mode, owner and times from a SETATTR. "now" times are
// returned as now, and reported in nowM and nowA.
func setattrAttr(in *fuse.SetAttrIn) (a remote.GuestAttr, nowM, nowA bool) {
	if m, ok := in.GetMode(); ok {
		a.Mode = &m
	}
	if u, ok := in.GetUID(); ok {
		v := int32(u)
		a.UID = &v
	}
	if g, ok := in.GetGID(); ok {
		v := int32(g)
		a.GID = &v
	}
	if t, ok := in.GetMTime(); ok {
		a.Mtime = &t
		nowM = in.Valid&fuse.FATTR_MTIME_NOW != 0
	}
	if t, ok := in.GetATime(); ok {
		a.Atime = &t
		nowA = in.Valid&fuse.FATTR_ATIME_NOW != 0
	}
	return a, nowM, nowA
}

func (f *FS) stagingDir() string {
	if f.StagingDir != "" {
		return f.StagingDir
	}
	return os.TempDir()
}

func (f *FS) recoveryDir() string {
	if f.RecoveryDir != "" {
		return f.RecoveryDir
	}
	return filepath.Join(os.TempDir(), "vspherefs-recovery")
}
