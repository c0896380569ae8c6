package fs

import (
	"context"
	"syscall"
)

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
