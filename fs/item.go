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

func (d *itemDir) list(ctx context.Context) (backend.Item, []backend.File, []string, error) {
	it, files, err := d.fs.Catalog.Files(ctx, d.id)
	if err != nil {
		return it, nil, nil, err
	}
	entries := make([]fileEntry, len(files))
	for i, f := range files {
		entries[i] = fileEntry{f}
	}
	return it, files, DisplayNames(entries), nil
}

func (d *itemDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	_, files, names, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path(), err)
	}
	entries := make([]fuse.DirEntry, len(files))
	for i, f := range files {
		entries[i] = fuse.DirEntry{Name: names[i], Mode: fuse.S_IFREG, Ino: ino("file", d.id+"/"+f.Name)}
	}
	return gofs.NewListDirStream(entries), 0
}

func (d *itemDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	it, files, names, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path()+"/"+name, err)
	}
	for i, n := range names {
		if n == name {
			f := files[i]
			d.fs.fileAttr(&out.Attr, f.Size, it.Modified, false)
			node := &libFile{fs: d.fs, itemID: d.id, name: f.Name}
			return d.NewInode(ctx, node, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: ino("file", d.id+"/"+f.Name)}), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *itemDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	it, err := d.fs.Catalog.Item(ctx, d.id, true)
	if err != nil {
		return toErrno(d.fs.Log, d.path(), err)
	}
	d.fs.dirAttr(&out.Attr, it.Modified)
	return 0
}
