package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/backend"
)

// librariesDir is libraries/: one folder per content library.
type librariesDir struct {
	gofs.Inode
	readOnlyDir
	fs *FS
}

type libEntry backend.Library

func (l libEntry) ServerName() string { return l.Name }
func (l libEntry) ServerID() string   { return l.ID }

func (d *librariesDir) list(ctx context.Context) ([]backend.Library, []string, error) {
	libs, err := d.fs.Catalog.Libraries(ctx)
	if err != nil {
		return nil, nil, err
	}
	entries := make([]libEntry, len(libs))
	for i, l := range libs {
		entries[i] = libEntry(l)
	}
	return libs, DisplayNames(entries), nil
}

func (d *librariesDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	libs, names, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, "libraries", err)
	}
	entries := make([]fuse.DirEntry, len(libs))
	for i, l := range libs {
		entries[i] = fuse.DirEntry{Name: names[i], Mode: fuse.S_IFDIR, Ino: ino("library", l.ID)}
	}
	return gofs.NewListDirStream(entries), 0
}

func (d *librariesDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	libs, names, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, "libraries/"+name, err)
	}
	for i, n := range names {
		if n == name {
			l := libs[i]
			d.fs.dirAttr(&out.Attr, l.Modified)
			return d.NewInode(ctx, &libraryDir{fs: d.fs, id: l.ID}, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: ino("library", l.ID)}), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *librariesDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr, d.fs.mounted)
	return 0
}

// libraryDir is libraries/<library>/: one folder per item.
type libraryDir struct {
	gofs.Inode
	readOnlyDir
	fs *FS
	id string
}

type itemEntry backend.Item

func (i itemEntry) ServerName() string { return i.Name }
func (i itemEntry) ServerID() string   { return i.ID }

func (d *libraryDir) path() string { return d.Path(nil) }

func (d *libraryDir) list(ctx context.Context) ([]backend.Item, []string, error) {
	items, err := d.fs.Catalog.Items(ctx, d.id)
	if err != nil {
		return nil, nil, err
	}
	entries := make([]itemEntry, len(items))
	for i, it := range items {
		entries[i] = itemEntry(it)
	}
	return items, DisplayNames(entries), nil
}

func (d *libraryDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	items, names, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path(), err)
	}
	entries := make([]fuse.DirEntry, len(items))
	for i, it := range items {
		entries[i] = fuse.DirEntry{Name: names[i], Mode: fuse.S_IFDIR, Ino: ino("item", it.ID)}
	}
	return gofs.NewListDirStream(entries), 0
}

func (d *libraryDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	items, names, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path()+"/"+name, err)
	}
	for i, n := range names {
		if n == name {
			it := items[i]
			d.fs.dirAttr(&out.Attr, it.Modified)
			return d.NewInode(ctx, &itemDir{fs: d.fs, id: it.ID}, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: ino("item", it.ID)}), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *libraryDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	libs, err := d.fs.Catalog.Libraries(ctx)
	if err != nil {
		return toErrno(d.fs.Log, d.path(), err)
	}
	for _, l := range libs {
		if l.ID == d.id {
			d.fs.dirAttr(&out.Attr, l.Modified)
			return 0
		}
	}
	return syscall.ENOENT
}
