package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The directory side of writes in libraries/: libraries and items are made
// by mkdir, removed by rmdir when empty and renamed by mv; files are created,
// removed, and renamed only while the server does not have them yet.
// Metadata changes succeed and change nothing (the API has no such
// attributes), so that tar -x and rsync -a finish.

// writable says whether writes may go ahead: EROFS under --read-only, in a
// subscribed library, or without a writer.
func (f *FS) writable(sub bool) syscall.Errno {
	if f.ReadOnly || f.Writes == nil || sub {
		return syscall.EROFS
	}
	return 0
}

const (
	renameNoReplace = 1 // RENAME_NOREPLACE
	renameExchange  = 2 // RENAME_EXCHANGE
)

// ---- libraries/

func (d *librariesDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := d.fs.writable(false); errno != 0 {
		return nil, errno
	}
	if errno := libNameErrno(name); errno != 0 { // before anything is made on the server
		return nil, errno
	}
	l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, "libraries/"+name, err)
	}
	if _, ok := l.find(name); ok {
		return nil, syscall.EEXIST
	}
	w := d.fs.Writes
	if w.PickDatastore == nil {
		return nil, syscall.EROFS
	}
	ds, err := w.PickDatastore(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, "libraries/"+name, err)
	}
	if _, err := w.lw.CreateLibrary(ctx, DecodeName(name), ds); err != nil {
		return nil, toErrno(d.fs.Log, "libraries/"+name, err)
	}
	d.fs.Catalog.Invalidate("", "")
	return d.Lookup(ctx, name, out)
}

func (d *librariesDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := d.fs.writable(false); errno != 0 {
		return errno
	}
	l, err := d.list(ctx)
	if err != nil {
		return toErrno(d.fs.Log, "libraries/"+name, err)
	}
	lib, ok := l.find(name)
	if !ok {
		return syscall.ENOENT
	}
	if lib.Subscribed {
		return syscall.EROFS
	}
	items, err := d.fs.Catalog.Items(ctx, lib.ID)
	if err != nil {
		return toErrno(d.fs.Log, "libraries/"+name, err)
	}
	if len(items) > 0 {
		return syscall.ENOTEMPTY
	}
	if err := d.fs.Writes.lw.DeleteLibrary(ctx, lib.ID); err != nil {
		return toErrno(d.fs.Log, "libraries/"+name, err)
	}
	d.fs.Catalog.Invalidate(lib.ID, "")
	return 0
}

func (d *librariesDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := d.fs.writable(false); errno != 0 {
		return errno
	}
	if errno := libNameErrno(newName); errno != 0 { // before anything is made on the server
		return errno
	}
	if _, ok := newParent.(*librariesDir); !ok {
		return syscall.EXDEV
	}
	if flags&renameExchange != 0 {
		return syscall.EINVAL
	}
	l, err := d.list(ctx)
	if err != nil {
		return toErrno(d.fs.Log, "libraries/"+name, err)
	}
	lib, ok := l.find(name)
	if !ok {
		return syscall.ENOENT
	}
	if _, taken := l.find(newName); taken {
		return syscall.EEXIST
	}
	if lib.Subscribed {
		return syscall.EROFS
	}
	if err := d.fs.Writes.lw.RenameLibrary(ctx, lib.ID, DecodeName(newName)); err != nil {
		return toErrno(d.fs.Log, "libraries/"+name, err)
	}
	d.fs.Catalog.Invalidate(lib.ID, "")
	return 0
}

func (d *librariesDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, notHere(d.fs, false)
}

func (d *librariesDir) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := d.fs.writable(false); errno != 0 {
		return errno
	}
	return d.Getattr(ctx, fh, out)
}

func (d *librariesDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, notHere(d.fs, false)
}

// notHere is the answer to a kind of entry a folder cannot hold: files
// directly in libraries/ or a library, folders in an item, links anywhere.
func notHere(f *FS, sub bool) syscall.Errno {
	if errno := f.writable(sub); errno != 0 {
		return errno
	}
	return syscall.EPERM
}

// ---- libraries/<lib>/

func (d *libraryDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := d.fs.writable(d.sub); errno != 0 {
		return nil, errno
	}
	if errno := libNameErrno(name); errno != 0 { // before anything is made on the server
		return nil, errno
	}
	p := d.path() + "/" + name
	l, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, p, err)
	}
	if _, ok := l.find(name); ok {
		return nil, syscall.EEXIST
	}
	if _, err := d.fs.Writes.lw.CreateItem(ctx, d.id, DecodeName(name), ""); err != nil {
		return nil, toErrno(d.fs.Log, p, err)
	}
	d.fs.Catalog.Invalidate(d.id, "")
	return d.Lookup(ctx, name, out)
}

func (d *libraryDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := d.fs.writable(d.sub); errno != 0 {
		return errno
	}
	p := d.path() + "/" + name
	l, err := d.list(ctx)
	if err != nil {
		return toErrno(d.fs.Log, p, err)
	}
	it, ok := l.find(name)
	if !ok {
		return syscall.ENOENT
	}
	if errno := d.deleteIfEmpty(ctx, p, it.ID); errno != 0 {
		return errno
	}
	return 0
}

// deleteIfEmpty deletes an item that has no files, here or on the server.
func (d *libraryDir) deleteIfEmpty(ctx context.Context, p, itemID string) syscall.Errno {
	_, files, err := d.fs.Catalog.Files(ctx, itemID)
	if err != nil {
		return toErrno(d.fs.Log, p, err)
	}
	if len(files) > 0 || d.fs.Writes.hasStaged(itemID) {
		return syscall.ENOTEMPTY
	}
	if err := d.fs.Writes.lw.DeleteItem(ctx, itemID); err != nil {
		return toErrno(d.fs.Log, p, err)
	}
	d.fs.Catalog.Invalidate(d.id, itemID)
	return 0
}

// Rename renames an item within its library (an item update); into another
// library it is EXDEV, so that mv copies.
func (d *libraryDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := d.fs.writable(d.sub); errno != 0 {
		return errno
	}
	if errno := libNameErrno(newName); errno != 0 { // before anything is made on the server
		return errno
	}
	np, ok := newParent.(*libraryDir)
	if !ok || np.id != d.id {
		return syscall.EXDEV
	}
	if flags&renameExchange != 0 {
		return syscall.EINVAL
	}
	p := d.path() + "/" + name
	l, err := d.list(ctx)
	if err != nil {
		return toErrno(d.fs.Log, p, err)
	}
	it, ok := l.find(name)
	if !ok {
		return syscall.ENOENT
	}
	if target, taken := l.find(newName); taken {
		if target.ID == it.ID {
			return 0
		}
		if flags&renameNoReplace != 0 {
			return syscall.EEXIST
		}
		// Over an empty item, as rename(2) goes over an empty directory.
		if errno := d.deleteIfEmpty(ctx, d.path()+"/"+newName, target.ID); errno != 0 {
			return errno
		}
	}
	if err := d.fs.Writes.lw.RenameItem(ctx, it.ID, DecodeName(newName)); err != nil {
		return toErrno(d.fs.Log, p, err)
	}
	d.fs.Catalog.Invalidate(d.id, it.ID)
	d.fs.Writes.renameItem(it.ID, d.path()+"/"+newName)
	return 0
}

func (d *libraryDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, notHere(d.fs, d.sub)
}

func (d *libraryDir) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := d.fs.writable(d.sub); errno != 0 {
		return errno
	}
	return d.Getattr(ctx, fh, out)
}

func (d *libraryDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, notHere(d.fs, d.sub)
}

// ---- libraries/<lib>/<item>/

// Create stages a new file (or opens an existing one for writing, if the
// kernel asks to create a name it has not looked up).
func (d *itemDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := d.fs.writable(d.sub); errno != 0 {
		return nil, nil, 0, errno
	}
	if errno := fileNameErrno(name); errno != 0 { // before anything is made on the server
		return nil, nil, 0, errno
	}
	n := DecodeName(name)
	p := d.path() + "/" + name
	_, l, err := d.list(ctx)
	if err != nil {
		return nil, nil, 0, toErrno(d.fs.Log, p, err)
	}
	_, onServer := l.find(name)
	onServer = onServer && !d.fs.Writes.isPending(d.id, n)
	if onServer || d.fs.Writes.find(d.id, n) != nil {
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
	}
	node := &libFile{fs: d.fs, itemID: d.id, libID: d.libID, sub: d.sub, name: n}
	h, errno := node.openWrite(ctx, d.path(), flags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	size, mtime := h.sf.stat()
	d.fs.fileAttr(&out.Attr, size, mtime, true)
	child := d.NewInode(ctx, node, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: h.sf.ino})
	if lf, ok := child.Operations().(*libFile); ok {
		h.f = lf
	}
	return child, h, fuse.FOPEN_DIRECT_IO, 0
}

// Unlink removes a file: through an update session if the server has it.
func (d *itemDir) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := d.fs.writable(d.sub); errno != 0 {
		return errno
	}
	_, l, err := d.list(ctx)
	if err != nil {
		return toErrno(d.fs.Log, d.path()+"/"+name, err)
	}
	_, onServer := l.find(name)
	w := d.fs.Writes
	return w.remove(ctx, w.item(d.id, d.libID, d.path()), DecodeName(name), onServer)
}

// Rename renames a file within its item (librename.go): a file the server
// does not have yet takes the new name and is committed once under it; a
// committed file is one session that adds the new name and removes the old.
// Into another item it is EXDEV, so that mv copies and deletes.
func (d *itemDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := d.fs.writable(d.sub); errno != 0 {
		return errno
	}
	if errno := checkNewName(newName); errno != 0 { // before anything is made on the server
		return errno
	}
	np, ok := newParent.(*itemDir)
	if !ok || np.id != d.id {
		return syscall.EXDEV
	}
	if flags&renameExchange != 0 {
		return syscall.EINVAL
	}
	if name == newName {
		return 0
	}
	if errno := fileNameErrno(newName); errno != 0 {
		return errno
	}
	itm, l, err := d.list(ctx)
	if err != nil {
		return toErrno(d.fs.Log, d.path()+"/"+name, err)
	}
	_, targetOnServer := l.find(newName)
	var fromServer *loader
	if f, ok := l.find(name); ok {
		fromServer = d.fs.serverLoader(itm, f.File)
	}
	w := d.fs.Writes
	to := DecodeName(newName)
	errno := w.rename(ctx, w.item(d.id, d.libID, d.path()), DecodeName(name), to, flags&renameNoReplace != 0, targetOnServer, fromServer)
	if errno == 0 {
		if child := d.GetChild(name); child != nil {
			if lf, ok := child.Operations().(*libFile); ok {
				lf.setName(to)
			}
		}
	}
	return errno
}

func (d *itemDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, notHere(d.fs, d.sub)
}

func (d *itemDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := d.fs.writable(d.sub); errno != 0 {
		return errno
	}
	return syscall.ENOTDIR // an item holds files only
}

func (d *itemDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, notHere(d.fs, d.sub)
}

func (d *itemDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, notHere(d.fs, d.sub)
}

func (d *itemDir) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := d.fs.writable(d.sub); errno != 0 {
		return errno
	}
	return d.Getattr(ctx, fh, out)
}

func (d *librariesDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, notHere(d.fs, false)
}

func (d *libraryDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, notHere(d.fs, d.sub)
}

// Extended attributes cannot be stored: setting one is ENOTSUP, which cp,
// mv, tar and rsync take as "not supported here" and go on.
func xattrRefused(f *FS, sub bool) syscall.Errno {
	if errno := f.writable(sub); errno != 0 {
		return errno
	}
	return syscall.ENOTSUP
}

func (f *libFile) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrRefused(f.fs, f.sub)
}

func (d *itemDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrRefused(d.fs, d.sub)
}

func (d *libraryDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrRefused(d.fs, d.sub)
}
