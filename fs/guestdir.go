package fs

import (
	"context"
	"path"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/backend"
)

// guestDir is vms/<vm>/ (path "/") or a directory below it: the guest's
// directory, listed with one paged ListFilesInGuest sequence per TTL.
// Guest names are POSIX names already: they are shown as they are.
type guestDir struct {
	gofs.Inode
	readOnlyDir
	fs   *FS
	vm   *backend.GuestVM
	path string // guest path
}

var (
	_ gofs.NodeReaddirer = (*guestDir)(nil)
	_ gofs.NodeLookuper  = (*guestDir)(nil)
	_ gofs.NodeGetattrer = (*guestDir)(nil)
)

func (d *guestDir) mountPath() string { return d.Path(nil) }

func (d *guestDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	list, err := d.vm.Dir(ctx, d.path)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.mountPath(), err)
	}
	entries := make([]fuse.DirEntry, 0, len(list))
	for _, s := range list {
		p := path.Join(d.path, s.Name)
		entries = append(entries, fuse.DirEntry{Name: s.Name, Mode: guestType(s.Type), Ino: d.fs.guestIno(d.vm, p)})
	}
	return gofs.NewListDirStream(entries), 0
}

func (d *guestDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	s, err := d.vm.Lookup(ctx, d.path, name)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.mountPath()+"/"+name, err)
	}
	p := path.Join(d.path, name)
	d.fs.guestAttr(&out.Attr, s)
	var node gofs.InodeEmbedder
	switch s.Type {
	case backend.GuestDir:
		node = &guestDir{fs: d.fs, vm: d.vm, path: p}
	case backend.GuestSymlink:
		node = &guestLink{fs: d.fs, vm: d.vm, path: p}
	default:
		node = &guestFile{fs: d.fs, vm: d.vm, path: p}
	}
	return d.NewInode(ctx, node, gofs.StableAttr{Mode: guestType(s.Type), Ino: d.fs.guestIno(d.vm, p)}), 0
}

func (d *guestDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if d.path == "/" {
		d.fs.dirAttr(&out.Attr, d.fs.mounted)
		return 0
	}
	return d.fs.guestGetattr(ctx, d.vm, d.path, d.mountPath(), &out.Attr)
}

func guestType(t backend.GuestFileType) uint32 {
	switch t {
	case backend.GuestDir:
		return fuse.S_IFDIR
	case backend.GuestSymlink:
		return fuse.S_IFLNK
	}
	return fuse.S_IFREG
}

func (f *FS) guestIno(vm *backend.GuestVM, p string) uint64 { return ino("guest", vm.ID()+p) }

// guestAttr shows a guest file as the guest reports it: type, mode, owner
// and group ids, size, mtime and atime at the precision the guest keeps.
func (f *FS) guestAttr(a *fuse.Attr, s backend.GuestStat) {
	a.Mode = guestType(s.Type) | s.Mode
	if f.ReadOnly {
		a.Mode &^= 0o222
	}
	a.Nlink = 1
	if s.Type == backend.GuestDir {
		a.Nlink = 2
	}
	a.Size = uint64(s.Size)
	if s.Type == backend.GuestSymlink {
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
func (f *FS) guestGetattr(ctx context.Context, vm *backend.GuestVM, p, mountPath string, a *fuse.Attr) syscall.Errno {
	s, err := vm.Lookup(ctx, path.Dir(p), path.Base(p))
	if err != nil {
		return toErrno(f.Log, mountPath, err)
	}
	f.guestAttr(a, s)
	return 0
}
