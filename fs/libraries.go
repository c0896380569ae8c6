package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/remote"
)

// librariesDir is libraries/: one folder per content library.
type librariesDir struct {
	gofs.Inode
	readOnlyDir
	fs *FS
}

type libEntry remote.Library

func (l libEntry) ServerName() string { return l.Name }
func (l libEntry) ServerID() string   { return l.ID }

func (d *librariesDir) list(ctx context.Context) (listing[libEntry], error) {
	libs, err := d.fs.Catalog.Libraries(ctx)
	entries := make([]libEntry, len(libs))
	for i, l := range libs {
		entries[i] = libEntry(l)
	}
	return newListing(entries), err
}

func (d *librariesDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, "libraries", err)
	}
	return l.stream(fuse.S_IFDIR, "library", ""), 0
}

func (d *librariesDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, "libraries/"+name, err)
	}
	lib, ok := l.find(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	d.fs.dirAttr(&out.Attr, lib.Modified)
	return d.NewInode(ctx, &libraryDir{fs: d.fs, id: lib.ID, sub: lib.Subscribed}, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: ino("library", lib.ID)}), 0
}

func (d *librariesDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr, d.fs.mounted)
	return 0
}

// libraryDir is libraries/<library>/: one folder per item.
type libraryDir struct {
	gofs.Inode
	readOnlyDir
	fs   *FS
	id   string
	sub  bool // subscribed: read-only
	memo listingMemo[itemEntry]
}

type itemEntry remote.Item

func (i itemEntry) ServerName() string { return i.Name }
func (i itemEntry) ServerID() string   { return i.ID }

func (d *libraryDir) path() string { return d.Path(nil) }

func (d *libraryDir) list(ctx context.Context) (listing[itemEntry], error) {
	items, err := d.fs.Catalog.Items(ctx, d.id)
	if len(items) == 0 {
		return listing[itemEntry]{}, err
	}
	return d.memo.get(&items[0], len(items), func() listing[itemEntry] {
		entries := make([]itemEntry, len(items))
		for i, it := range items {
			entries[i] = itemEntry(it)
		}
		return newListing(entries)
	}), err
}

func (d *libraryDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path(), err)
	}
	return l.stream(fuse.S_IFDIR, "item", ""), 0
}

func (d *libraryDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path()+"/"+name, err)
	}
	it, ok := l.find(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	d.fs.dirAttr(&out.Attr, it.Modified)
	return d.NewInode(ctx, &itemDir{fs: d.fs, id: it.ID, libID: d.id, sub: d.sub}, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: ino("item", it.ID)}), 0
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
