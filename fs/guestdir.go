package fs

import (
	"context"
	"errors"
	"path"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/remote"
)

// guestDir is vms/<vm>/ (path "/") or a directory below it: the guest's
// directory, listed with one paged ListFilesInGuest sequence per TTL.
// Guest names are POSIX names already: they are shown as they are.
type guestDir struct {
	guestNode
}

var (
	_ gofs.NodeReaddirer = (*guestDir)(nil)
	_ gofs.NodeLookuper  = (*guestDir)(nil)
	_ gofs.NodeGetattrer = (*guestDir)(nil)
	_ gofs.NodeSetattrer = (*guestDir)(nil)
	_ gofs.NodeCreater   = (*guestDir)(nil)
	_ gofs.NodeMkdirer   = (*guestDir)(nil)
	_ gofs.NodeUnlinker  = (*guestDir)(nil)
	_ gofs.NodeRmdirer   = (*guestDir)(nil)
	_ gofs.NodeRenamer   = (*guestDir)(nil)
	_ gofs.NodeSymlinker = (*guestDir)(nil)
	_ gofs.NodeLinker    = (*guestDir)(nil)
)

// created returns the child name if it is a file created here that the
// guest does not have yet (open, not yet committed).
func (d *guestDir) created(name string) *guestFile {
	c := d.GetChild(name)
	if c == nil {
		return nil
	}
	f, ok := c.Operations().(*guestFile)
	if !ok {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == nil || f.st.exists || f.unlinked {
		return nil
	}
	return f
}

func (d *guestDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	dir := d.guestPath()
	list, err := d.vm.Dir(ctx, dir)
	if d.top == nil && errors.Is(err, remote.ErrHostDown) {
		return unreachable(d.fs, d.mountPath(), err), 0 // a walk of the mount stays clean
	}
	if err != nil {
		return nil, toErrno(d.fs.Log, d.mountPath(), err)
	}
	entries := make([]fuse.DirEntry, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		seen[s.Name] = true
		entries = append(entries, fuse.DirEntry{Name: s.Name, Mode: guestType(s.Type), Ino: d.childIno(s.Name)})
	}
	for name := range d.Children() {
		if !seen[name] && d.created(name) != nil {
			entries = append(entries, fuse.DirEntry{Name: name, Mode: fuse.S_IFREG, Ino: d.childIno(name)})
		}
	}
	return gofs.NewListDirStream(entries), 0
}

func (d *guestDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	dir := d.guestPath()
	s, err := d.vm.Lookup(ctx, dir, name)
	if errors.Is(err, remote.ErrNotFound) {
		if f := d.created(name); f != nil {
			f.mu.Lock()
			if f.st != nil {
				d.fs.guestAttr(&out.Attr, f.st.stat())
			}
			f.mu.Unlock()
			d.fs.inos.use(f.EmbeddedInode())
			return f.EmbeddedInode(), 0
		}
	}
	if err != nil {
		return nil, toErrno(d.fs.Log, d.mountPath()+"/"+name, err)
	}
	n := d.newChild(ctx, name, s)
	if f, ok := n.Operations().(*guestFile); ok { // a live node may be staged
		f.mu.Lock()
		if f.st != nil {
			s = f.st.stat()
		}
		f.mu.Unlock()
	}
	d.fs.guestAttr(&out.Attr, s)
	return n, 0
}

// newChild returns the node of a listed child: the live one if the tree
// has it (it may be staged), else a new one.
func (d *guestDir) newChild(ctx context.Context, name string, s remote.GuestStat) *gofs.Inode {
	if c := d.GetChild(name); c != nil && c.StableAttr().Mode == guestType(s.Type) {
		d.fs.inos.use(c)
		return c
	}
	id := gofs.StableAttr{Mode: guestType(s.Type), Ino: d.newIno(name)}
	var node gofs.InodeEmbedder
	switch s.Type {
	case remote.GuestDir:
		node = &guestDir{guestNode: d.child(name)}
	case remote.GuestSymlink:
		node = &guestLink{guestNode: d.child(name)}
	default:
		node = &guestFile{guestNode: d.child(name)}
	}
	return d.NewInode(ctx, node, id)
}

func (d *guestDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if d.top == nil {
		d.fs.dirAttr(&out.Attr, d.fs.mounted)
		return 0
	}
	return d.fs.guestGetattr(ctx, d.vm, d.guestPath(), d.mountPath(), &out.Attr)
}

// Setattr: chmod, chown and utimens of a directory, one
// ChangeFileAttributesInGuest.
func (d *guestDir) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if d.fs.ReadOnly {
		return syscall.EROFS
	}
	if errno := d.mode0000(in); errno != 0 {
		return errno
	}
	if _, ok := in.GetSize(); ok {
		return syscall.EISDIR
	}
	a, _, _ := setattrAttr(in)
	p := d.guestPath()
	if err := d.vm.Chattr(ctx, p, a); err != nil {
		return toErrno(d.fs.Log, d.mountPath(), err)
	}
	return d.Getattr(ctx, fh, out)
}

// Create makes a file that exists only in its stage until its first commit
// (close, fsync), which uploads it. A name the guest has already (the
// kernel's negative entry was stale) is opened as open(2) would.
func (d *guestDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if d.fs.ReadOnly {
		return nil, nil, 0, syscall.EROFS
	}
	if errno := guestNameErrno(name); errno != 0 {
		return nil, nil, 0, errno
	}
	dir := d.guestPath()
	p := guestJoin(dir, name)
	if err := d.vm.CanCreate(p); err != nil { // a Windows guest: not at the top level, not every name
		return nil, nil, 0, toErrno(d.fs.Log, d.mountPath()+"/"+name, err)
	}
	s, err := d.vm.Lookup(ctx, dir, name)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, remote.ErrNotFound):
		return nil, nil, 0, toErrno(d.fs.Log, d.mountPath()+"/"+name, err)
	case exists && flags&syscall.O_EXCL != 0:
		return nil, nil, 0, syscall.EEXIST
	case exists && s.Type == remote.GuestDir:
		return nil, nil, 0, syscall.EISDIR
	case exists && s.Type == remote.GuestSymlink:
		return nil, nil, 0, syscall.EPERM // the API writes no file through a link
	}
	var n *gofs.Inode
	var f *guestFile
	if exists {
		n = d.newChild(ctx, name, s)
		f = n.Operations().(*guestFile)
	} else {
		if f = d.created(name); f == nil {
			now := time.Now()
			s = remote.GuestStat{Name: name, Type: remote.GuestFile, Mode: mode & 0o7777, UID: -1, GID: -1, Mtime: now, Atime: now}
			f = &guestFile{guestNode: d.child(name)}
			n = d.NewInode(ctx, f, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: d.newIno(name)})
		} else {
			n = f.EmbeddedInode()
			d.fs.inos.use(n)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == nil {
		if err := f.stageLocked(s, exists); err != nil {
			return nil, nil, 0, toErrno(d.fs.Log, d.mountPath()+"/"+name, err)
		}
		f.st.setOrigin(recovered{Tree: "vms", Origin: d.mountPath() + "/" + name})
	} else {
		f.st.writers++
	}
	if exists && flags&syscall.O_TRUNC != 0 {
		if !f.idleLocked(ctx) {
			f.releaseLocked()
			return nil, nil, 0, syscall.EINTR
		}
		if err := f.truncateLocked(ctx, 0); err != nil {
			f.releaseLocked()
			return nil, nil, 0, toErrno(d.fs.Log, d.mountPath()+"/"+name, err)
		}
	}
	d.fs.guestAttr(&out.Attr, f.st.stat())
	h := &guestHandle{f: f, write: true, append: flags&syscall.O_APPEND != 0, mode: f.gate.admit("", false, false, false)}
	return n, h, h.mode.openFlags(0), 0
}

func (d *guestDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if d.fs.ReadOnly {
		return nil, syscall.EROFS
	}
	if errno := guestNameErrno(name); errno != 0 {
		return nil, errno
	}
	s, err := d.vm.Mkdir(ctx, guestJoin(d.guestPath(), name), mode&0o7777)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.mountPath()+"/"+name, err)
	}
	d.fs.guestAttr(&out.Attr, s)
	return d.newChild(ctx, name, s), 0
}

func (d *guestDir) Unlink(ctx context.Context, name string) syscall.Errno {
	if d.fs.ReadOnly {
		return syscall.EROFS
	}
	p := guestJoin(d.guestPath(), name)
	f := d.created(name)
	if f == nil {
		if err := d.vm.Remove(ctx, p); err != nil {
			return toErrno(d.fs.Log, d.mountPath()+"/"+name, err)
		}
		if c := d.GetChild(name); c != nil {
			f, _ = c.Operations().(*guestFile)
		}
	}
	if f != nil {
		f.mu.Lock()
		f.unlinked = true
		f.mu.Unlock()
	}
	d.fs.inos.displace(d.GetChild(name)) // may be open: its number stays taken
	return 0
}

func (d *guestDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if d.fs.ReadOnly {
		return syscall.EROFS
	}
	p := guestJoin(d.guestPath(), name)
	if err := d.vm.Rmdir(ctx, p); err != nil {
		return toErrno(d.fs.Log, d.mountPath()+"/"+name, err)
	}
	d.fs.inos.displace(d.GetChild(name))
	return 0
}

// Rename moves files with MoveFileInGuest (replacing the target, as
// rename(2) does) and directories with MoveDirectoryInGuest, which has no
// overwrite: an empty target directory is removed first (not atomic), a
// non-empty one is ENOTEMPTY.
func (d *guestDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if d.fs.ReadOnly {
		return syscall.EROFS
	}
	nd, ok := newParent.(*guestDir)
	if !ok || nd.vm.ID() != d.vm.ID() {
		return syscall.EXDEV
	}
	if flags&^uint32(1) != 0 { // RENAME_EXCHANGE, RENAME_WHITEOUT: no such call
		return syscall.EINVAL
	}
	noReplace := flags&1 != 0 // RENAME_NOREPLACE
	if errno := guestNameErrno(newName); errno != 0 {
		return errno
	}
	src, dst := guestJoin(d.guestPath(), name), guestJoin(nd.guestPath(), newName)
	if src == dst {
		return 0
	}
	mp := d.mountPath() + "/" + name
	node := d.GetChild(name)
	if f := d.created(name); f != nil { // not in the guest yet: commit it first
		f.mu.Lock()
		errno := f.commitLocked(ctx)
		f.mu.Unlock()
		if errno != 0 {
			return errno
		}
	}
	s, err := d.vm.Lookup(ctx, d.guestPath(), name)
	if err != nil {
		return toErrno(d.fs.Log, mp, err)
	}
	t, terr := nd.vm.Lookup(ctx, nd.guestPath(), newName)
	targetExists := terr == nil
	if terr != nil && !errors.Is(terr, remote.ErrNotFound) {
		return toErrno(d.fs.Log, mp, terr)
	}
	if targetExists && noReplace {
		return syscall.EEXIST
	}
	if s.Type == remote.GuestDir {
		if targetExists {
			if t.Type != remote.GuestDir {
				return syscall.ENOTDIR
			}
			if err := d.vm.Rmdir(ctx, dst); err != nil {
				return toErrno(d.fs.Log, mp, err)
			}
		}
		err = d.vm.MoveDir(ctx, src, dst)
	} else {
		if targetExists && t.Type == remote.GuestDir {
			return syscall.EISDIR
		}
		err = d.vm.MoveFile(ctx, src, dst, true)
	}
	if err != nil {
		return toErrno(d.fs.Log, mp, err)
	}
	if c := nd.GetChild(newName); c != nil && c != node {
		if f, ok := c.Operations().(*guestFile); ok && targetExists {
			f.mu.Lock()
			f.unlinked = true // replaced: its open writers write to nothing
			f.mu.Unlock()
		}
		d.fs.inos.displace(c) // go-fuse drops it from the tree; it may be open
	}
	if g := guestNodeOf(node); g != nil {
		g.moveTo(&nd.guestNode, newName) // the commits of an open file go to its new path
	}
	d.fs.inos.displace(node) // keeps its numbers, under paths they were not made for
	return 0
}

// Symlink and Link: GuestFileManager has no call that makes either.
func (d *guestDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *guestDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func guestType(t remote.GuestFileType) uint32 {
	switch t {
	case remote.GuestDir:
		return fuse.S_IFDIR
	case remote.GuestSymlink:
		return fuse.S_IFLNK
	}
	return fuse.S_IFREG
}

// guestAttr shows a guest file as the guest reports it: type, mode, owner
// and group ids, size, mtime and atime at the precision the guest keeps.
func (f *FS) guestAttr(a *fuse.Attr, s remote.GuestStat) {
	a.Mode = guestType(s.Type) | s.Mode
	if f.ReadOnly {
		a.Mode &^= 0o222
	}
	a.Nlink = 1
	if s.Type == remote.GuestDir {
		a.Nlink = 2
	}
	a.Size = uint64(s.Size)
	if s.Type == remote.GuestSymlink {
		// The guest reports the target's attributes: a link is its target's text.
		a.Mode = fuse.S_IFLNK | 0o777
		a.Size = uint64(len(s.Target))
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 1 << 20
	a.Owner = fuse.Owner{Uid: f.UID, Gid: f.GID}
	if s.UID >= 0 && s.GID >= 0 {
		a.Owner = fuse.Owner{Uid: uint32(s.UID), Gid: uint32(s.GID)}
	}
	mtime, atime := s.Mtime, s.Atime
	if atime.IsZero() {
		atime = mtime
	}
	a.SetTimes(&atime, &mtime, &mtime)
}

// guestGetattr stats a guest path from its parent's cached list.
func (f *FS) guestGetattr(ctx context.Context, vm Guest, p, mountPath string, a *fuse.Attr) syscall.Errno {
	s, err := vm.Lookup(ctx, path.Dir(p), path.Base(p))
	if err != nil {
		return toErrno(f.Log, mountPath, err)
	}
	f.guestAttr(a, s)
	return 0
}
