package sim

import (
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

// A Windows guest (a VM whose guestId is one of vSphere's "win…" ids) has
// drives instead of "/": the host directory fs/C is drive C:, fs/D is D:.
// It behaves as a Windows guest does through GuestFileManager:
//
//   - paths are Windows paths, C:\Users\x (forward slashes are taken too, as
//     Win32 takes them); a path without a drive, or a relative one, is
//     InvalidArgument; a drive that does not exist is FileNotFound. There
//     is no call that lists the drives: clients probe them.
//   - names with any of \ / : * ? " < > | or control characters are
//     InvalidArgument (ERROR_INVALID_NAME; ":" would name a data stream).
//   - attributes are GuestWindowsFileAttributes: hidden, readOnly,
//     createTime (the host's ctime stands in), modification and access
//     times at NTFS's 100 ns; no permissions, no owner. readOnly is kept as
//     the host file's owner write bit, hidden in memory.
//   - a read-only file cannot be deleted, nor replaced by a move or an
//     upload: GuestPermissionDenied. Moving it elsewhere is allowed.
//   - ChangeFileAttributesInGuest and InitiateFileTransferToGuest take
//     Windows attributes, and also POSIX ones (govc guest.upload and
//     guest.chmod send those whatever the guest): of those only the times
//     apply.
//   - drive roots cannot be removed or moved.
//
// Names are case-sensitive here, where NTFS is case-insensitive: a client
// must not rely on either.

// winResolve maps a Windows path to its name under the root.
func winResolve(p string) (string, types.BaseMethodFault) {
	bad := &types.InvalidArgument{InvalidProperty: "path"}
	if len(p) < 2 || p[1] != ':' || !('a' <= p[0]|0x20 && p[0]|0x20 <= 'z') {
		return "", bad
	}
	rest := strings.ReplaceAll(p[2:], `\`, "/")
	if rest != "" && rest[0] != '/' {
		return "", bad // relative to the drive's current directory
	}
	for _, c := range strings.Split(rest, "/") {
		if !winNameOK(c) {
			return "", bad
		}
	}
	drive := strings.ToUpper(p[:1])
	return "fs/" + drive + strings.TrimSuffix(path.Clean("/"+rest), "/"), nil
}

func winNameOK(c string) bool {
	for _, r := range c {
		if r < 32 || strings.ContainsRune(`:*?"<>|`, r) {
			return false
		}
	}
	return true
}

// winName is winResolve, and the drive must exist.
func (g *guestFS) winName(p string) (string, types.BaseMethodFault) {
	n, f := winResolve(p)
	if f != nil {
		return "", f
	}
	if fi, err := g.root.Stat(n[:4]); err != nil || !fi.IsDir() {
		return "", &types.FileNotFound{FileFault: types.FileFault{File: p}}
	}
	return n, nil
}

// isRoot says whether a name under the root is the guest's "/" or a drive.
func (g *guestFS) isRoot(n string) bool {
	if g.windows {
		return len(n) == 4 && n[:3] == "fs/"
	}
	return n == "fs"
}

// base is the last element of a guest path.
func (g *guestFS) base(p string) string {
	if g.windows {
		p = strings.TrimRight(p, `\/`)
		if i := strings.LastIndexAny(p, `\/`); i >= 0 {
			return p[i+1:]
		}
		return p
	}
	return path.Base(p)
}

// join appends a name to a guest directory path.
func (g *guestFS) join(dir, name string) string {
	if g.windows {
		return strings.TrimRight(dir, `\/`) + `\` + name
	}
	return path.Join(dir, name)
}

// readOnly says whether a Windows guest's file has the read-only attribute.
func (g *guestFS) readOnly(fi os.FileInfo) bool {
	return g.windows && !fi.IsDir() && fi.Mode().Perm()&0o200 == 0
}

// ntfsTime is t as NTFS keeps it: 100 ns ticks.
func ntfsTime(t time.Time) time.Time { return t.Truncate(100 * time.Nanosecond).UTC() }

func (g *guestFS) winAttr(n string, fi os.FileInfo) *types.GuestWindowsFileAttributes {
	st := fi.Sys().(*syscall.Stat_t)
	mtime := ntfsTime(time.Unix(st.Mtim.Unix()))
	atime := ntfsTime(time.Unix(st.Atim.Unix()))
	ctime := ntfsTime(time.Unix(st.Ctim.Unix()))
	ro := g.readOnly(fi)
	g.mu.Lock()
	hidden := g.hidden[n]
	g.mu.Unlock()
	return &types.GuestWindowsFileAttributes{
		GuestFileAttributes: types.GuestFileAttributes{ModificationTime: &mtime, AccessTime: &atime},
		Hidden:              &hidden,
		ReadOnly:            &ro,
		CreateTime:          &ctime,
	}
}

// winChattr applies readOnly and hidden; the caller applies the times.
func (g *guestFS) winChattr(n, p string, fi os.FileInfo, a types.BaseGuestFileAttributes) types.BaseMethodFault {
	switch x := a.(type) {
	case *types.GuestWindowsFileAttributes:
		if x.ReadOnly != nil && !fi.IsDir() {
			m := fi.Mode().Perm() | 0o200
			if *x.ReadOnly {
				m = fi.Mode().Perm() &^ 0o222
			}
			if err := g.root.Chmod(n, m); err != nil {
				return osFault(err, p)
			}
		}
		if x.Hidden != nil {
			g.mu.Lock()
			g.hidden[n] = *x.Hidden
			g.mu.Unlock()
		}
	case *types.GuestPosixFileAttributes, *types.GuestFileAttributes:
		// times only
	default:
		return new(types.OperationNotSupportedByGuest)
	}
	return nil
}

// forgetHidden drops the hidden marks of n and below (removed).
func (g *guestFS) forgetHidden(n string) {
	if !g.windows {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.hidden {
		if k == n || strings.HasPrefix(k, n+"/") {
			delete(g.hidden, k)
		}
	}
}

// movedHidden moves the hidden marks of src and below to dst.
func (g *guestFS) movedHidden(src, dst string) {
	if !g.windows {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.hidden {
		if k == dst || strings.HasPrefix(k, dst+"/") {
			delete(g.hidden, k)
		}
	}
	for k, v := range g.hidden {
		if k == src || strings.HasPrefix(k, src+"/") {
			delete(g.hidden, k)
			g.hidden[dst+k[len(src):]] = v
		}
	}
}
