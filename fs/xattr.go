package fs

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vspherefs/vspherefs/remote"
)

// Read-only metadata as extended attributes, user.vsphere.*, where they
// apply: the ids govc shows, versions, checksums, the guest's own view of a
// file. getxattr of a name a node lacks is ENODATA; setxattr and
// removexattr are xattrWriteErrno in every tree. The README lists them all.

// xattrStatusSocket names the mount's status socket on its root.
const xattrStatusSocket = "user.vsphere.status_socket"

// xattrGet answers getxattr from a node's attributes: ERANGE when dest is
// too small (size 0 asks for the length alone), ENODATA for a name it lacks.
func xattrGet(attrs []xattr, name string, dest []byte) (uint32, syscall.Errno) {
	for _, a := range attrs {
		if a.name != name {
			continue
		}
		if len(dest) == 0 {
			return uint32(len(a.value)), 0
		}
		if len(dest) < len(a.value) {
			return uint32(len(a.value)), syscall.ERANGE
		}
		return uint32(copy(dest, a.value)), 0
	}
	return 0, syscall.ENODATA
}

// xattrList answers listxattr: the names, each NUL-terminated.
func xattrList(attrs []xattr, dest []byte) (uint32, syscall.Errno) {
	n := 0
	for _, a := range attrs {
		if a.value != "" {
			n += len(a.name) + 1
		}
	}
	if len(dest) == 0 {
		return uint32(n), 0
	}
	if len(dest) < n {
		return uint32(n), syscall.ERANGE
	}
	off := 0
	for _, a := range attrs {
		if a.value != "" {
			off += copy(dest[off:], a.name)
			dest[off] = 0
			off++
		}
	}
	return uint32(off), 0
}

type xattr struct{ name, value string }

// ours says whether a name is one of ours: any other (the kernel asks for
// security.capability at writes) is ENODATA at once, with no call to vSphere.
func ours(name string) bool { return strings.HasPrefix(name, "user.vsphere.") }

// present drops the attributes with no value.
func present(attrs []xattr) []xattr {
	out := attrs[:0]
	for _, a := range attrs {
		if a.value != "" {
			out = append(out, a)
		}
	}
	return out
}

// xattrWriteErrno is the answer to setxattr and removexattr in every tree:
// the user.vsphere.* attributes are read-only and no other can be stored.
// ENOTSUP is what cp -p, tar --xattrs and rsync -X take as "this filesystem
// keeps none" and pass over; a --read-only mount says EROFS, as for any change.
func xattrWriteErrno(f *FS) syscall.Errno {
	if f.ReadOnly {
		return syscall.EROFS
	}
	return syscall.ENOTSUP
}

func (r *root) attrs() []xattr {
	return present([]xattr{{xattrStatusSocket, r.fs.StatusSocket}, {"user.vsphere.server", r.fs.FsName}})
}

func (r *root) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return xattrGet(r.attrs(), attr, dest)
}

func (r *root) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return xattrList(r.attrs(), dest)
}

func (r *root) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrWriteErrno(r.fs)
}

func (r *root) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrWriteErrno(r.fs)
}

// Every directory without attributes of its own still answers writes alike.

func (d *librariesDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrWriteErrno(d.fs)
}

func (d *librariesDir) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrWriteErrno(d.fs)
}

func (d *vmsDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrWriteErrno(d.fs)
}

func (d *vmsDir) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrWriteErrno(d.fs)
}

func (d *exportsDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrWriteErrno(d.fs)
}

func (d *exportsDir) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrWriteErrno(d.fs)
}

// libraries/<lib>/

func (d *libraryDir) attrs(ctx context.Context) ([]xattr, syscall.Errno) {
	a := []xattr{{"user.vsphere.library_id", d.id}}
	libs, err := d.fs.Catalog.Libraries(ctx)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path(), err)
	}
	for _, l := range libs {
		if l.ID == d.id {
			a = append(a, xattr{"user.vsphere.library_type", l.Type}, xattr{"user.vsphere.datastore", l.DatastoreID},
				xattr{"user.vsphere.created", stamp(l.Created)})
		}
	}
	return present(a), 0
}

func (d *libraryDir) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !ours(attr) {
		return 0, syscall.ENODATA
	}
	a, errno := d.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrGet(a, attr, dest)
}

func (d *libraryDir) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	a, errno := d.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrList(a, dest)
}

func (d *libraryDir) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrRefused(d.fs, d.sub)
}

// libraries/<lib>/<item>/

func itemAttrs(it remote.Item) []xattr {
	return []xattr{{"user.vsphere.library_id", it.LibraryID}, {"user.vsphere.item_id", it.ID},
		{"user.vsphere.content_version", it.ContentVersion}, {"user.vsphere.created", stamp(it.Created)}}
}

func (d *itemDir) attrs(ctx context.Context) ([]xattr, syscall.Errno) {
	it, err := d.fs.Catalog.Item(ctx, d.id, false)
	if err != nil {
		return nil, toErrno(d.fs.Log, d.path(), err)
	}
	return present(itemAttrs(it)), 0
}

func (d *itemDir) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !ours(attr) {
		return 0, syscall.ENODATA
	}
	a, errno := d.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrGet(a, attr, dest)
}

func (d *itemDir) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	a, errno := d.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrList(a, dest)
}

func (d *itemDir) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrRefused(d.fs, d.sub)
}

// libraries/<lib>/<item>/<file>: a file staged and never committed has only
// its item's attributes.

func (f *libFile) attrs(ctx context.Context) ([]xattr, syscall.Errno) {
	it, file, err := f.current(ctx)
	if err != nil && it.ID == "" {
		if it, err = f.fs.Catalog.Item(ctx, f.itemID, false); err != nil {
			return nil, toErrno(f.fs.Log, f.path(), err)
		}
	}
	a := append(itemAttrs(it), xattr{"user.vsphere.file_version", file.Version}, xattr{"user.vsphere.checksum", file.Checksum})
	return present(a), 0
}

func (f *libFile) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !ours(attr) {
		return 0, syscall.ENODATA
	}
	a, errno := f.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrGet(a, attr, dest)
}

func (f *libFile) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	a, errno := f.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrList(a, dest)
}

func (f *libFile) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrRefused(f.fs, f.sub)
}

// vms/<vm>/… : the VM, and the file as the guest lists it.

func (n *guestNode) attrs(ctx context.Context) ([]xattr, syscall.Errno) {
	a := []xattr{{"user.vsphere.vm", n.vm.MoRef()}, {"user.vsphere.guest_path", n.guestPath()}}
	if n.top != nil {
		st, err := n.vm.Stat(ctx, n.guestPath())
		if err != nil {
			return nil, toErrno(n.fs.Log, n.mountPath(), err)
		}
		if st.UID >= 0 {
			a = append(a, xattr{"user.vsphere.guest_owner", strconv.FormatInt(st.UID, 10)},
				xattr{"user.vsphere.guest_group", strconv.FormatInt(st.GID, 10)})
		}
		if st.Mode != 0 {
			a = append(a, xattr{"user.vsphere.guest_mode", "0" + strconv.FormatUint(uint64(st.Mode), 8)})
		}
		a = append(a, xattr{"user.vsphere.guest_mtime", stamp(st.Mtime)})
	}
	return present(a), 0
}

func (n *guestNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !ours(attr) {
		return 0, syscall.ENODATA
	}
	a, errno := n.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrGet(a, attr, dest)
}

func (n *guestNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	a, errno := n.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrList(a, dest)
}

// exports/<vm>[@<snapshot>]/ and disks/…: the VM and snapshot.

func targetAttrs(t remote.ExportTarget) []xattr {
	a := []xattr{{"user.vsphere.vm", t.VM.Value}}
	if t.Snapshot != nil {
		a = append(a, xattr{"user.vsphere.snapshot", t.Snapshot.Ref.Value}, xattr{"user.vsphere.snapshot_name", t.Snapshot.Name},
			xattr{"user.vsphere.snapshot_path", t.Snapshot.Path}, xattr{"user.vsphere.created", stamp(t.Snapshot.Created)})
	}
	return a
}

func (d *exportDir) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return xattrGet(present(targetAttrs(d.t)), attr, dest)
}

func (d *exportDir) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return xattrList(present(targetAttrs(d.t)), dest)
}

func (d *exportDir) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrWriteErrno(d.fs)
}

func (d *exportDir) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrWriteErrno(d.fs)
}

// A file of an export: its export's id, and the manifest's checksum once the
// export has ended (the .mf is written last). Asking waits for the file, as stat does.
func (f *exportFile) attrs(ctx context.Context) ([]xattr, syscall.Errno) {
	s, err := f.dir.find(ctx, f.name)
	if err != nil {
		return nil, toErrno(f.fs.Log, f.mountPath(), err)
	}
	a := append(targetAttrs(f.dir.t), xattr{"user.vsphere.export_id", s.id})
	if !s.img {
		a = append(a, xattr{"user.vsphere.manifest_checksum", manifestSum(filepath.Dir(s.path), filepath.Base(s.path))})
	}
	return present(a), 0
}

// manifestSum finds name's line in the .mf of a spool folder: "SHA256:hex".
func manifestSum(dir, name string) string {
	mfs, _ := filepath.Glob(filepath.Join(dir, "*.mf"))
	for _, mf := range mfs {
		b, err := os.ReadFile(mf)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			// ovftool's format: SHA256(name)= hex
			alg, rest, ok := strings.Cut(line, "(")
			if !ok {
				continue
			}
			file, sum, ok := strings.Cut(rest, ")= ")
			if ok && file == name {
				return alg + ":" + strings.TrimSpace(sum)
			}
		}
	}
	return ""
}

func (f *exportFile) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !ours(attr) {
		return 0, syscall.ENODATA
	}
	a, errno := f.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrGet(a, attr, dest)
}

func (f *exportFile) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	a, errno := f.attrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	return xattrList(a, dest)
}

func (f *exportFile) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrWriteErrno(f.fs)
}

func (f *exportFile) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrWriteErrno(f.fs)
}

// stamp is a time as RFC 3339 with nanoseconds, "" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
