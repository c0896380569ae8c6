package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/remote"
)

// vmsDir is vms/: one folder per VM, named by the odd-name rule.
type vmsDir struct {
	gofs.Inode
	readOnlyDir
	fs *FS
}

type vmEntry remote.VM

func (v vmEntry) ServerName() string { return v.Name }
func (v vmEntry) ServerID() string   { return v.Ref.Value }

func (d *vmsDir) list(ctx context.Context) ([]remote.VM, []string, error) {
	vms, err := d.fs.Guests.VMs(ctx)
	if err != nil {
		return nil, nil, err
	}
	entries := make([]vmEntry, len(vms))
	for i, v := range vms {
		entries[i] = vmEntry(v)
	}
	return vms, DisplayNames(entries), nil
}

func (d *vmsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	vms, names, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, "vms", err)
	}
	entries := make([]fuse.DirEntry, len(vms))
	for i, v := range vms {
		entries[i] = fuse.DirEntry{Name: names[i], Mode: fuse.S_IFDIR, Ino: ino("vm", v.Ref.Value)}
	}
	return gofs.NewListDirStream(entries), 0
}

func (d *vmsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	vms, names, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, "vms/"+name, err)
	}
	for i, n := range names {
		if n == name {
			v := vms[i]
			d.fs.dirAttr(&out.Attr, d.fs.mounted)
			node := &guestDir{guestNode{fs: d.fs, vm: d.fs.Guests.VM(v)}}
			return d.NewInode(ctx, node, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: ino("vm", v.Ref.Value)}), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *vmsDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr, d.fs.mounted)
	return 0
}
