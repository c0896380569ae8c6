package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/backend"
)

// itemDir is libraries/<library>/<item>/: the item's files.
type itemDir struct {
	gofs.Inode
	readOnlyDir
	fs *FS
	id string
}

type fileEntry struct {
	backend.File
}

func (f fileEntry) ServerName() string { return f.Name }
func (f fileEntry) ServerID() string   { return f.Name }

func (d *itemDir) path() string { return d.Path(nil) }

func (d *itemDir) list(ctx context.Context) (backend.Item, listing[fileEntry], error) {
	it, files, err := d.fs.Catalog.Files(ctx, d.id)
	entries := make([]fileEntry, len(files))
	for i, f := range files {
		entries[i] = fileEntry{f}
	}
	return it, newListing(entries), err
}

func (d *itemDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	it, l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path(), err)
	}
	return l.stream(fuse.S_IFREG, "file", fileKey(it, "")), 0
}

func (d *itemDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	it, l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path()+"/"+name, err)
	}
	f, ok := l.find(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	d.fs.fileAttr(&out.Attr, f.Size, it.Modified, false)
	node := &libFile{fs: d.fs, itemID: d.id, name: f.Name}
	return d.NewInode(ctx, node, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: ino("file", fileKey(it, f.Name))}), 0
}

func (d *itemDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	it, err := d.fs.Catalog.Item(ctx, d.id, true)
	if err != nil {
		return toErrno(d.fs.Log, d.path(), err)
	}
	d.fs.dirAttr(&out.Attr, it.Modified)
	return 0
}

// fileKey names a file of one content version: each version is its own inode,
// so a reader that opened the old one keeps its pages (as after a rename over
// a local file) while new opens see the new one.
func fileKey(it backend.Item, name string) string {
	return it.ID + "@" + it.ContentVersion + "/" + name
}
