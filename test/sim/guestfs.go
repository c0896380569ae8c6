package sim

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

// guestFS is one VM's guest filesystem: a host directory whose fs/ subtree is
// the guest's "/", and whose spool/ holds uploads in flight (so a half-written
// PUT is never visible in the guest). All access goes through an os.Root, so
// no guest path or symlink reaches outside the VM's directory.
type guestFS struct {
	root    *os.Root
	windows bool // a Windows guest: paths C:\..., drives fs/C, fs/D; attributes as guestwin.go says

	mu     sync.Mutex
	hidden map[string]bool // Windows: names under the root with the hidden attribute
}

func openGuestFS(dir string, windows bool) (*guestFS, error) {
	for _, d := range []string{"fs", "spool"} {
		if err := os.MkdirAll(dir+"/"+d, 0o755); err != nil {
			return nil, err
		}
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &guestFS{root: r, windows: windows, hidden: map[string]bool{}}, nil
}

// name maps an absolute guest path to its name under the root.
func (g *guestFS) name(p string) (string, types.BaseMethodFault) {
	if g.windows {
		return g.winName(p)
	}
	return g.resolve(p)
}

// resolve is name without the checks that need the disk.
func (g *guestFS) resolve(p string) (string, types.BaseMethodFault) {
	if g.windows {
		return winResolve(p)
	}
	if !strings.HasPrefix(p, "/") {
		return "", &types.InvalidArgument{InvalidProperty: "path"}
	}
	return "fs" + strings.TrimSuffix(path.Clean(p), "/"), nil
}

// osFault turns an OS error on guest path p into the fault a Linux guest gives.
func osFault(err error, p string) types.BaseMethodFault {
	ff := types.FileFault{File: p}
	var errno syscall.Errno
	switch {
	case errors.Is(err, syscall.ENOTEMPTY):
		return &types.DirectoryNotEmpty{FileFault: ff}
	case errors.Is(err, fs.ErrNotExist):
		return &types.FileNotFound{FileFault: ff}
	case errors.Is(err, fs.ErrExist):
		return &types.FileAlreadyExists{FileFault: ff}
	case errors.Is(err, fs.ErrPermission):
		return new(types.GuestPermissionDenied)
	case errors.As(err, &errno):
		switch errno {
		case syscall.ENOTDIR:
			return &types.NotADirectory{FileFault: ff}
		case syscall.EISDIR:
			return &types.NotAFile{FileFault: ff}
		case syscall.ENAMETOOLONG:
			return &types.FileNameTooLong{FileFault: ff}
		case syscall.ENOSPC:
			return &types.NoDiskSpace{FileFault: ff}
		}
	}
	if strings.Contains(err.Error(), "escapes") { // os.Root: a symlink out of the guest
		return &types.FileNotFound{FileFault: ff}
	}
	return &ff
}

// info describes the file at guest path p as ListFilesInGuest does, under
// the name given. For a symlink, the attributes are the target's (as the API
// says) when the target resolves inside the guest.
func (g *guestFS) info(name, p string, fi os.FileInfo) types.GuestFileInfo {
	gi := types.GuestFileInfo{Path: name, Size: fi.Size(), Type: string(types.GuestFileTypeFile)}
	attrFrom := fi
	target := ""
	switch {
	case fi.IsDir():
		gi.Type = string(types.GuestFileTypeDirectory)
	case fi.Mode()&fs.ModeSymlink != 0:
		gi.Type = string(types.GuestFileTypeSymlink)
		n, _ := g.resolve(p)
		target, _ = g.root.Readlink(n)
		if st, err := g.root.Stat(n); err == nil {
			attrFrom = st
		}
	}
	if g.windows {
		n, _ := g.resolve(p)
		gi.Attributes = g.winAttr(n, attrFrom)
		return gi
	}
	a := posixAttr(attrFrom)
	a.SymlinkTarget = target
	gi.Attributes = a
	return gi
}

// posixAttr reports attributes as a POSIX guest does: full st_mode ("stat(2)
// format"), ids, and times to the nanosecond the host filesystem keeps.
func posixAttr(fi os.FileInfo) *types.GuestPosixFileAttributes {
	st := fi.Sys().(*syscall.Stat_t)
	uid, gid := int32(st.Uid), int32(st.Gid)
	mtime := time.Unix(st.Mtim.Unix()).UTC()
	atime := time.Unix(st.Atim.Unix()).UTC()
	return &types.GuestPosixFileAttributes{
		GuestFileAttributes: types.GuestFileAttributes{ModificationTime: &mtime, AccessTime: &atime},
		OwnerId:             &uid,
		GroupId:             &gid,
		Permissions:         int64(st.Mode),
	}
}

// list answers ListFilesInGuest: a directory's entries sorted by name, or a
// file alone; paged by index and maxResults, capped at page entries per call.
func (g *guestFS) list(p string, index, maxResults int32, pattern string, page int) (*types.GuestListFileInfo, types.BaseMethodFault) {
	n, f := g.name(p)
	if f != nil {
		return nil, f
	}
	var re *regexp.Regexp
	if pattern != "" {
		var err error
		if re, err = regexp.Compile(pattern); err != nil {
			return nil, &types.InvalidArgument{InvalidProperty: "matchPattern"}
		}
	}
	fi, err := g.root.Lstat(n)
	if err != nil {
		return nil, osFault(err, p)
	}
	var all []types.GuestFileInfo
	if !fi.IsDir() {
		all = append(all, g.info(g.base(p), p, fi))
	} else {
		d, err := g.root.Open(n)
		if err != nil {
			return nil, osFault(err, p)
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return nil, osFault(err, p)
		}
		slices.SortFunc(ents, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		for _, e := range ents { // sorted by name: pages are stable
			if re != nil && !re.MatchString(e.Name()) {
				continue
			}
			efi, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			all = append(all, g.info(e.Name(), g.join(p, e.Name()), efi))
		}
	}
	res := &types.GuestListFileInfo{}
	if int(index) >= len(all) || index < 0 {
		return res, nil
	}
	all = all[index:]
	limit := page
	if maxResults > 0 && int(maxResults) < limit {
		limit = int(maxResults)
	}
	if len(all) > limit {
		res.Remaining = int32(len(all) - limit)
		all = all[:limit]
	}
	res.Files = all
	return res, nil
}

// regular stats p and refuses anything but a regular file (directories and
// symlinks cannot be transfer sources or be moved as files).
func (g *guestFS) regular(p string) (os.FileInfo, types.BaseMethodFault) {
	n, f := g.name(p)
	if f != nil {
		return nil, f
	}
	fi, err := g.root.Lstat(n)
	if err != nil {
		return nil, osFault(err, p)
	}
	if !fi.Mode().IsRegular() {
		return nil, &types.NotAFile{FileFault: types.FileFault{File: p}}
	}
	return fi, nil
}

func (g *guestFS) mkdir(p string, parents bool) types.BaseMethodFault {
	n, f := g.name(p)
	if f != nil {
		return f
	}
	if fi, err := g.root.Lstat(n); err == nil {
		if parents && fi.IsDir() {
			return nil // mkdir -p of an existing directory
		}
		return &types.FileAlreadyExists{FileFault: types.FileFault{File: p}}
	}
	var err error
	if parents {
		err = g.root.MkdirAll(n, 0o755)
	} else {
		err = g.root.Mkdir(n, 0o755)
	}
	if err != nil {
		return osFault(err, p)
	}
	return nil
}

func (g *guestFS) deleteFile(p string) types.BaseMethodFault {
	n, f := g.name(p)
	if f != nil {
		return f
	}
	fi, err := g.root.Lstat(n)
	if err != nil {
		return osFault(err, p)
	}
	if fi.IsDir() {
		return &types.NotAFile{FileFault: types.FileFault{File: p}}
	}
	if g.readOnly(fi) {
		return new(types.GuestPermissionDenied) // Windows deletes no read-only file
	}
	if err := g.root.Remove(n); err != nil {
		return osFault(err, p)
	}
	g.forgetHidden(n)
	return nil
}

func (g *guestFS) deleteDir(p string, recursive bool) types.BaseMethodFault {
	n, f := g.name(p)
	if f != nil {
		return f
	}
	if g.isRoot(n) {
		return new(types.GuestPermissionDenied) // not even root removes "/" (or a drive)
	}
	fi, err := g.root.Lstat(n)
	if err != nil {
		return osFault(err, p)
	}
	if !fi.IsDir() {
		return &types.NotADirectory{FileFault: types.FileFault{File: p}}
	}
	if recursive {
		err = g.root.RemoveAll(n)
	} else {
		err = g.root.Remove(n)
	}
	if errors.Is(err, syscall.EEXIST) { // rmdir(2) may say EEXIST for ENOTEMPTY
		err = syscall.ENOTEMPTY
	}
	if err != nil {
		return osFault(err, p)
	}
	g.forgetHidden(n)
	return nil
}

// moveFile renames a file (or symlink); a directory source is NotAFile, which
// govc guest.mv relies on to fall back to MoveDirectoryInGuest.
func (g *guestFS) moveFile(src, dst string, overwrite bool) types.BaseMethodFault {
	sn, f := g.name(src)
	if f != nil {
		return f
	}
	dn, f := g.name(dst)
	if f != nil {
		return f
	}
	fi, err := g.root.Lstat(sn)
	if err != nil {
		return osFault(err, src)
	}
	if fi.IsDir() {
		return &types.NotAFile{FileFault: types.FileFault{File: src}}
	}
	if di, err := g.root.Lstat(dn); err == nil {
		if di.IsDir() {
			return &types.NotAFile{FileFault: types.FileFault{File: dst}}
		}
		if !overwrite {
			return &types.FileAlreadyExists{FileFault: types.FileFault{File: dst}}
		}
		if g.readOnly(di) {
			return new(types.GuestPermissionDenied) // Windows replaces no read-only file
		}
	}
	if err := g.root.Rename(sn, dn); err != nil {
		return osFault(err, dst)
	}
	g.movedHidden(sn, dn)
	return nil
}

// moveDir renames a directory; the API has no overwrite flag, so an existing
// destination is refused.
func (g *guestFS) moveDir(src, dst string) types.BaseMethodFault {
	sn, f := g.name(src)
	if f != nil {
		return f
	}
	dn, f := g.name(dst)
	if f != nil {
		return f
	}
	fi, err := g.root.Lstat(sn)
	if err != nil {
		return osFault(err, src)
	}
	if !fi.IsDir() {
		return &types.NotADirectory{FileFault: types.FileFault{File: src}}
	}
	if g.isRoot(sn) || g.isRoot(dn) {
		return new(types.GuestPermissionDenied)
	}
	if _, err := g.root.Lstat(dn); err == nil {
		return &types.FileAlreadyExists{FileFault: types.FileFault{File: dst}}
	}
	if dn == sn || strings.HasPrefix(dn, sn+"/") {
		return &types.InvalidArgument{InvalidProperty: "dstDirectoryPath"}
	}
	if err := g.root.Rename(sn, dn); err != nil {
		return osFault(err, dst)
	}
	g.movedHidden(sn, dn)
	return nil
}

// chattr applies the attributes that are set: permissions (0 means unset, as
// in vcsim and govc), owner and group, access and modification times.
func (g *guestFS) chattr(p string, a types.BaseGuestFileAttributes) types.BaseMethodFault {
	n, f := g.name(p)
	if f != nil {
		return f
	}
	fi, err := g.root.Stat(n)
	if err != nil {
		return osFault(err, p)
	}
	if g.windows {
		if f := g.winChattr(n, p, fi, a); f != nil {
			return f
		}
	} else if px, ok := a.(*types.GuestPosixFileAttributes); ok {
		if px.Permissions != 0 {
			if err := g.root.Chmod(n, fileMode(px.Permissions)); err != nil {
				return osFault(err, p)
			}
		}
		if px.OwnerId != nil || px.GroupId != nil {
			uid, gid := -1, -1
			if px.OwnerId != nil {
				uid = int(*px.OwnerId)
			}
			if px.GroupId != nil {
				gid = int(*px.GroupId)
			}
			if err := g.root.Chown(n, uid, gid); err != nil {
				return osFault(err, p)
			}
		}
	} else if _, ok := a.(*types.GuestFileAttributes); !ok {
		return new(types.OperationNotSupportedByGuest) // Windows attributes on a Linux guest
	}
	base := a.GetGuestFileAttributes()
	if base.ModificationTime != nil || base.AccessTime != nil {
		st := posixAttr(fi)
		atime, mtime := *st.AccessTime, *st.ModificationTime
		if base.AccessTime != nil {
			atime = *base.AccessTime
		}
		if base.ModificationTime != nil {
			mtime = *base.ModificationTime
		}
		if g.windows { // NTFS keeps 100 ns
			atime, mtime = ntfsTime(atime), ntfsTime(mtime)
		}
		if err := g.root.Chtimes(n, atime, mtime); err != nil {
			return osFault(err, p)
		}
	}
	return nil
}

// fileMode converts chmod(2) bits to an os.FileMode.
func fileMode(perm int64) os.FileMode {
	m := os.FileMode(perm & 0o777)
	if perm&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if perm&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if perm&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

// mktemp creates a file or directory with a unique name in dir.
func (g *guestFS) mktemp(dir, prefix, suffix string, isDir bool) (string, types.BaseMethodFault) {
	if dir == "" {
		dir = "/tmp"
		if g.windows {
			dir = `C:\Windows\Temp`
		}
	}
	for range 100 {
		p := g.join(dir, prefix+randomHex(4)+suffix)
		n, f := g.name(p)
		if f != nil {
			return "", f
		}
		var err error
		if isDir {
			err = g.root.Mkdir(n, 0o700)
		} else {
			var fh *os.File
			if fh, err = g.root.OpenFile(n, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
				fh.Close()
			}
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", osFault(err, dir)
		}
		return p, nil
	}
	return "", &types.FileFault{File: dir}
}
