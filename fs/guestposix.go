package fs

// POSIX calls the guest API has no direct counterpart for: what can be
// done honestly is, the rest is refused with one documented errno.

import (
	"bytes"
	"context"
	"errors"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/remote"
)

var _ gofs.NodeMknoder = (*guestDir)(nil)

// Mknod of a regular file creates it, as create and close would (an empty
// file, uploaded at once); fifos, sockets and device nodes are EPERM: the
// guest API makes none of them (as vfat refuses them).
func (d *guestDir) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if d.fs.ReadOnly {
		return nil, syscall.EROFS
	}
	if t := mode & syscall.S_IFMT; t != 0 && t != syscall.S_IFREG {
		d.fs.Log.Info(syscall.EPERM.Error(), "path", d.mountPath()+"/"+name, "call", "mknod", "fault", "the guest API makes no fifo, socket or device")
		return nil, syscall.EPERM
	}
	p := guestJoin(d.guestPath(), name)
	mp := d.mountPath() + "/" + name
	if err := d.vm.CanCreate(p); err != nil { // a Windows guest: not at the top level, not every name
		return nil, toErrno(d.fs.Log, mp, err)
	}
	if _, err := d.vm.Lookup(ctx, d.guestPath(), name); err == nil || d.created(name) != nil {
		return nil, syscall.EEXIST
	} else if !errors.Is(err, remote.ErrNotFound) {
		return nil, toErrno(d.fs.Log, mp, err)
	}
	m := mode & 0o7777
	s, err := d.vm.Upload(ctx, p, bytes.NewReader(nil), 0, remote.GuestAttr{Mode: &m}, false)
	if err != nil {
		return nil, toErrno(d.fs.Log, mp, err)
	}
	d.fs.guestAttr(&out.Attr, s)
	return d.newChild(ctx, name, s), 0
}

// mode0000 refuses chmod to no permission bits at all: the guest API takes
// a mode of 0 as "unchanged" (Windows guests excepted: there a mode only
// sets or clears the read-only attribute).
func (n *guestNode) mode0000(in *fuse.SetAttrIn) syscall.Errno {
	if m, ok := in.GetMode(); ok && m&0o7777 == 0 && !n.vm.Windows() {
		n.fs.Log.Info(syscall.EINVAL.Error(), "path", n.mountPath(), "call", "chmod", "fault", "the guest API cannot set mode 0000")
		return syscall.EINVAL
	}
	return 0
}
