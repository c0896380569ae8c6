package fs

import (
	"context"
	"fmt"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/remote"
)

// itemDir is libraries/<library>/<item>/: the item's files.
type itemDir struct {
	gofs.Inode
	readOnlyDir
	fs    *FS
	id    string
	libID string
	sub   bool // in a subscribed library: read-only
}

type fileEntry struct {
	remote.File
}

func (f fileEntry) ServerName() string { return f.Name }
func (f fileEntry) ServerID() string   { return f.Name }

func (d *itemDir) path() string { return d.Path(nil) }

func (d *itemDir) list(ctx context.Context) (remote.Item, listing[fileEntry], error) {
	it, files, err := d.fs.Catalog.Files(ctx, d.id)
	entries := make([]fileEntry, len(files))
	for i, f := range files {
		entries[i] = fileEntry{f}
	}
	return it, newListing(entries), err
}

// Readdir lists the server's files and the files staged here that the
// server does not have yet (being written, or waiting for their rename).
func (d *itemDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	it, l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path(), err)
	}
	local := d.fs.Writes.stagedNames(d.id)
	out := make([]fuse.DirEntry, 0, len(l.entries)+len(local))
	for i, e := range l.entries {
		if _, ok := local[e.Name]; !ok && d.fs.Writes.isPending(d.id, e.Name) {
			continue // renamed away; removed with the item's next session
		}
		delete(local, e.Name)
		out = append(out, fuse.DirEntry{Name: l.names[i], Mode: fuse.S_IFREG, Ino: ino("file", fileKey(it.ID, e.File))})
	}
	for name, sf := range local {
		out = append(out, fuse.DirEntry{Name: EncodeName(name), Mode: fuse.S_IFREG, Ino: sf.ino})
	}
	return gofs.NewListDirStream(out), 0
}

func (d *itemDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if sf := d.fs.Writes.find(d.id, DecodeName(name)); sf != nil {
		size, mtime := sf.stat()
		d.fs.fileAttr(&out.Attr, size, mtime, d.fs.writable(d.sub) == 0)
		node := &libFile{fs: d.fs, itemID: d.id, libID: d.libID, sub: d.sub, name: DecodeName(name)}
		return d.NewInode(ctx, node, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: sf.ino}), 0
	}
	it, l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path()+"/"+name, err)
	}
	f, ok := l.find(name)
	if !ok || d.fs.Writes.isPending(d.id, f.Name) {
		return nil, syscall.ENOENT
	}
	d.fs.fileAttr(&out.Attr, f.Size, d.fs.fileMtime(it, f.File), d.fs.writable(d.sub) == 0)
	node := &libFile{fs: d.fs, itemID: d.id, libID: d.libID, sub: d.sub, name: f.Name}
	return d.NewInode(ctx, node, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: ino("file", fileKey(it.ID, f.File))}), 0
}

func (d *itemDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	it, err := d.fs.Catalog.Item(ctx, d.id, true)
	if err != nil {
		return toErrno(d.fs.Log, d.path(), err)
	}
	d.fs.dirAttr(&out.Attr, it.Modified)
	return 0
}

// fileKey names one version of a file: each version is its own inode, so a
// reader that opened the old one keeps its pages (as after a rename over a
// local file) while new opens see the new one, and a commit of one file
// leaves the inodes of the item's other files as they were.
func fileKey(itemID string, f remote.File) string {
	return fmt.Sprintf("%s/%s@%s/%d", itemID, f.Name, f.Version, f.Size)
}
