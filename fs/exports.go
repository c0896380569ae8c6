package fs

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/remote"
)

// exportsDir is exports/ (or disks/, when disks is set): a folder per VM,
// then one per snapshot, named <vm>@<snapshot>, by the odd-name rule.
// In exports/, mkdir <vm>@<name> snapshots the VM and rmdir removes the
// snapshot; nothing else changes.
type exportsDir struct {
	gofs.Inode
	readOnlyDir
	fs    *FS
	disks bool
}

var (
	_ gofs.NodeLookuper = (*exportsDir)(nil)
	_ gofs.NodeMkdirer  = (*exportsDir)(nil)
	_ gofs.NodeRmdirer  = (*exportsDir)(nil)
)

// exportEntry is a VM or one of its snapshots.
type exportEntry struct{ t remote.ExportTarget }

func (e exportEntry) ServerName() string { return e.t.Label() }
func (e exportEntry) ServerID() string {
	if e.t.Snapshot != nil {
		return e.t.Snapshot.Ref.Value
	}
	return e.t.VM.Value
}

func (d *exportsDir) top() string {
	if d.disks {
		return "disks"
	}
	return "exports"
}

// list gives the VMs first (so their names never depend on snapshots'),
// then the snapshots; vms is how many VMs lead the listing.
func (d *exportsDir) list(ctx context.Context) (l listing[exportEntry], vms int, err error) {
	all, err := d.fs.Exports.VMs(ctx)
	if err != nil {
		return l, 0, err
	}
	var entries []exportEntry
	for _, v := range all {
		entries = append(entries, exportEntry{remote.ExportTarget{VM: v.Ref, Name: v.Name}})
	}
	for _, v := range all {
		for _, s := range v.Snapshots {
			entries = append(entries, exportEntry{remote.ExportTarget{VM: v.Ref, Name: v.Name, Snapshot: &s}})
		}
	}
	return newListing(entries), len(all), nil
}

func (d *exportsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	l, _, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.top(), err)
	}
	out := make([]fuse.DirEntry, len(l.entries))
	for i, e := range l.entries {
		out[i] = fuse.DirEntry{Name: l.names[i], Mode: fuse.S_IFDIR, Ino: d.ino(e.t)}
	}
	return gofs.NewListDirStream(out), 0
}

func (d *exportsDir) ino(t remote.ExportTarget) uint64 { return ino(d.top(), t.Key()) }

func (d *exportsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, _, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.top()+"/"+name, err)
	}
	e, ok := l.find(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	return d.child(ctx, e.t, out), 0
}

func (d *exportsDir) child(ctx context.Context, t remote.ExportTarget, out *fuse.EntryOut) *gofs.Inode {
	mtime := d.fs.mounted
	if t.Snapshot != nil && !t.Snapshot.Created.IsZero() {
		mtime = t.Snapshot.Created
	}
	d.fs.dirAttr(&out.Attr, mtime)
	node := &exportDir{fs: d.fs, t: t, disks: d.disks}
	return d.NewInode(ctx, node, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: d.ino(t)})
}

func (d *exportsDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr, d.fs.mounted)
	return 0
}

// Mkdir <vm>@<name> creates a snapshot of the VM called name: no memory,
// quiesced when VMware Tools run. The VM is the longest VM folder name
// that name starts with, followed by '@'.
func (d *exportsDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if d.disks || d.fs.ReadOnly {
		return nil, syscall.EROFS
	}
	path := d.top() + "/" + name
	l, vms, err := d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, path, err)
	}
	if _, ok := l.find(name); ok {
		return nil, syscall.EEXIST
	}
	best := -1
	for i := range vms {
		if strings.HasPrefix(name, l.names[i]+"@") && (best < 0 || len(l.names[i]) > len(l.names[best])) {
			best = i
		}
	}
	if best < 0 {
		if strings.Contains(name, "@") {
			return nil, syscall.ENOENT // no such VM
		}
		return nil, syscall.EROFS // only snapshots can be made here
	}
	if errno := checkNewName(name); errno != 0 {
		return nil, errno // a name the rule would show otherwise
	}
	vm := l.entries[best].t
	snap := DecodeName(name[len(l.names[best])+1:])
	if snap == "" {
		return nil, syscall.EINVAL
	}
	d.fs.Log.Info("creating snapshot", "path", path, "vm", vm.Name, "snapshot", snap)
	if err := d.fs.Exports.CreateSnapshot(ctx, vm.VM, snap); err != nil {
		return nil, toErrno(d.fs.Log, path, err)
	}
	l, _, err = d.list(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, path, err)
	}
	for i, e := range l.entries {
		if e.t.VM == vm.VM && e.t.Snapshot != nil && e.t.Snapshot.Name == snap {
			if l.names[i] != name {
				d.fs.Log.Warn("new snapshot shows under another name", "asked", name, "shown", l.names[i])
			}
			return d.child(ctx, e.t, out), 0
		}
	}
	return nil, toErrno(d.fs.Log, path, remote.Errorf("CreateSnapshot", vm.Name+"@"+snap, remote.ErrIO, "the snapshot is not in the VM's list"))
}

// Rmdir of a <vm>@<snapshot> folder removes the snapshot (and its spooled
// export); VM folders cannot be removed.
func (d *exportsDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if d.disks || d.fs.ReadOnly {
		return syscall.EROFS
	}
	path := d.top() + "/" + name
	l, _, err := d.list(ctx)
	if err != nil {
		return toErrno(d.fs.Log, path, err)
	}
	e, ok := l.find(name)
	if !ok {
		return syscall.ENOENT
	}
	if e.t.Snapshot == nil {
		return syscall.EROFS
	}
	d.fs.Log.Info("removing snapshot", "path", path)
	if err := d.fs.Exports.RemoveSnapshot(ctx, e.t); err != nil {
		return toErrno(d.fs.Log, path, err)
	}
	return 0
}

// exportDir is exports/<vm>/ (the OVF package govc export.ovf writes) or
// disks/<vm>/ (disk-N.img, each disk's raw image). Names come from the
// configuration, so listing needs no export; the first lookup of a file
// starts the export and waits for that file, since sizes are only known
// then: a disk's as soon as it is spooled and checked against the lease's
// manifest, the .ovf's and .mf's at the end of the export. The disks come
// first, in listing and in inode order (cp and tar take a folder's files
// in inode order), so a copy of the folder reads each disk while the next
// one is exported.
type exportDir struct {
	gofs.Inode
	readOnlyDir
	fs    *FS
	t     remote.ExportTarget
	disks bool
}

var (
	_ gofs.NodeLookuper       = (*exportDir)(nil)
	_ gofs.NodeOpendirHandler = (*exportDir)(nil)
	_ gofs.NodeGetattrer      = (*exportDir)(nil)
)

func (d *exportDir) mountPath() string { return d.Path(nil) }

// names are the folder's file names, without exporting.
func (d *exportDir) names(ctx context.Context) ([]string, error) {
	names, n, err := d.fs.Exports.Names(ctx, d.t)
	if err != nil {
		return nil, err
	}
	if d.disks {
		names = make([]string, n)
		for i := range n {
			names[i] = remote.DiskImageName(i)
		}
		return names, nil
	}
	for i := range names {
		names[i] = packageName(names[i])
	}
	return names, nil
}

// packageName is a package file's path component: its own name whenever it
// can be one, since the .ovf and .mf refer to the files by name (a VM called
// "50%" has 50%.ovf); encoded by the odd-name rule only when it cannot.
func packageName(name string) string {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return EncodeName(name)
	}
	return name
}

func (d *exportDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if err := d.fs.Exports.Check(ctx, d.t); errors.Is(err, remote.ErrBusy) {
		// A running VM cannot be exported: its folder lists nothing (so
		// that find and du of the mount succeed) and the log says why.
		unreachable(d.fs, d.mountPath(), err)
		return &exportDirHandle{d: d}, 0, 0
	}
	names, err := d.names(ctx)
	if err != nil {
		return nil, 0, toErrno(d.fs.Log, d.mountPath(), err)
	}
	h := &exportDirHandle{d: d}
	for _, n := range names {
		h.entries = append(h.entries, fuse.DirEntry{Name: n, Mode: fuse.S_IFREG, Ino: d.fileIno(names, n)})
	}
	return h, 0, 0
}

// fileIno numbers a folder's files in listing order, from a base that the
// folder's key hashes to: GNU cp and tar copy a folder's files in inode
// order, and that must be the disks' order, the .ovf and .mf last.
func (d *exportDir) fileIno(names []string, name string) uint64 {
	kind := "exportfile"
	if d.disks {
		kind = "diskimage"
	}
	for i, n := range names {
		if n == name && i < 1<<16-2 {
			return ino(kind, d.t.Key())&^(1<<16-1) + uint64(i) + 2
		}
	}
	return ino(kind, d.t.Key()+"/"+name)
}

func (d *exportDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return d.lookup(ctx, name, out, true)
}

// lookup finds a file of the package; unless wait, only in a finished
// export (a listing must not start one).
func (d *exportDir) lookup(ctx context.Context, name string, out *fuse.EntryOut, wait bool) (*gofs.Inode, syscall.Errno) {
	path := d.mountPath() + "/" + name
	names, err := d.names(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, path, err)
	}
	known := false
	for _, n := range names {
		known = known || n == name
	}
	if !known {
		return nil, syscall.ENOENT // never export for a name that cannot be there
	}
	var s spooled
	if wait {
		if s, err = d.find(ctx, name); err != nil {
			return nil, toErrno(d.fs.Log, path, err)
		}
	} else {
		f, ok := d.fs.Exports.FileReady(ctx, d.t, d.match(name))
		if !ok {
			return nil, syscall.EAGAIN // readdirplus: no attributes yet, and none cached
		}
		s = d.spooled(f)
	}
	s.attr(d.fs, &out.Attr)
	node := &exportFile{fs: d.fs, dir: d, name: name}
	return d.NewInode(ctx, node, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: d.fileIno(names, name)}), 0
}

// spooled is a file of an export as this folder shows it, ready to read.
type spooled struct {
	path  string
	size  int64
	mtime time.Time // when it became ready: the same at every stat
	id    string    // the export's ID
	img   bool      // the raw image of a streamOptimized disk
	// blocks is what the file occupies, in bytes: less than size for a
	// sparse disk image, so that du and sparse-aware copies see the holes.
	blocks int64
	// failed is the export's error once it has failed: a disk can be
	// served before its export ends, and is no longer once it failed.
	failed func() error
	// final says the export ended well: nothing can fail it any more.
	final func() bool
	// raw, for a disk image of an export that ended well, is the image
	// decoded into a sparse local file, or "" while it is not (yet).
	raw func() string
}

// attr fills a file's attributes.
func (s spooled) attr(f *FS, a *fuse.Attr) {
	f.fileAttr(a, s.size, s.mtime, false)
	if s.img {
		a.Blocks = uint64(s.blocks+511) / 512
	}
}

// match picks the file called name out of the folder's export.
func (d *exportDir) match(name string) remote.FileMatch {
	if d.disks {
		return func(i int, f remote.ExportedFile) bool { return f.Disk != nil && remote.DiskImageName(i) == name }
	}
	return func(i int, f remote.ExportedFile) bool { return packageName(f.Name) == name }
}

// find starts the folder's export if needed, and waits for the file called
// name: for a disk, until it is spooled and checked; for the rest, until the
// export is done.
func (d *exportDir) find(ctx context.Context, name string) (spooled, error) {
	f, err := d.fs.Exports.File(withOrigin(ctx, d.mountPath()), d.t, d.match(name))
	if err != nil {
		return spooled{}, err
	}
	return d.spooled(f), nil
}

func (d *exportDir) spooled(f remote.SpooledFile) spooled {
	s := spooled{path: f.Path, size: f.Size, mtime: f.Ready, id: f.ExportID, failed: f.Err, final: f.Final}
	if d.disks {
		s.size, s.blocks, s.img, s.raw = f.Disk.Capacity, f.Disk.Allocated, true, f.RawImage
	}
	return s
}

func (d *exportDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	mtime := d.fs.mounted
	if d.t.Snapshot != nil && !d.t.Snapshot.Created.IsZero() {
		mtime = d.t.Snapshot.Created
	}
	d.fs.dirAttr(&out.Attr, mtime)
	return 0
}

// exportDirHandle lists an export folder. For READDIRPLUS it gives
// attributes only when the export is finished: listing never starts one
// (the kernel then looks names up one by one, and stat starts it).
type exportDirHandle struct {
	d       *exportDir
	entries []fuse.DirEntry
	pos     int
}

var (
	_ gofs.FileReaddirenter = (*exportDirHandle)(nil)
	_ gofs.FileLookuper     = (*exportDirHandle)(nil)
	_ gofs.FileSeekdirer    = (*exportDirHandle)(nil)
)

func (h *exportDirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.pos >= len(h.entries) {
		return nil, 0
	}
	e := h.entries[h.pos]
	h.pos++
	e.Off = uint64(h.pos)
	return &e, 0
}

func (h *exportDirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off > uint64(len(h.entries)) {
		return syscall.EINVAL
	}
	h.pos = int(off)
	return 0
}

func (h *exportDirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return h.d.lookup(ctx, name, out, false)
}
