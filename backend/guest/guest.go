// Package guest is the guest operations client: guest file listings and
// attributes, transfers to and from the guest (InitiateFileTransfer*), the
// logins per VM, and the rules of Windows guests' drives.
package guest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"path"
	"regexp"
	"sync"
	"time"

	"github.com/vmware/govmomi/guest"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// Guests gives the guest file operations of VMs (GuestFileManager, through
// govmomi's guest package), with logins resolved per VM by name.
type Guests struct {
	c      *backend.Conn
	logins *GuestLogins
	ttl    time.Duration // lifetime of cached VM and directory lists

	born   time.Time // shown as the time of Windows drives
	mu     sync.Mutex
	fms    map[types.ManagedObjectReference]fmEntry
	vms    backend.Timed[[]remote.VM]
	lists  map[listKey]backend.Timed[[]remote.GuestStat]
	gen    int64                                                         // bumped by every change to lists (guestlist.go)
	drives map[types.ManagedObjectReference]map[byte]backend.Timed[bool] // Windows drive probes (guestwin.go)
}

type listKey struct {
	vm  types.ManagedObjectReference
	dir string
}

type fmEntry struct {
	vim *vim25.Client // the client it was made with: a re-login makes a new one
	fm  *guest.FileManager
}

// NewGuests makes the guest operations of a connection; VM and directory
// lists are cached for ttl.
func NewGuests(c *backend.Conn, logins *GuestLogins, ttl time.Duration) *Guests {
	return &Guests{c: c, logins: logins, ttl: ttl, born: time.Now(), fms: map[types.ManagedObjectReference]fmEntry{},
		lists: map[listKey]backend.Timed[[]remote.GuestStat]{}, drives: map[types.ManagedObjectReference]map[byte]backend.Timed[bool]{}}
}

// VMs lists the VMs, cached for the TTL.
func (g *Guests) VMs(ctx context.Context) ([]remote.VM, error) {
	g.mu.Lock()
	if g.vms.Fresh(g.ttl) {
		defer g.mu.Unlock()
		return g.vms.V, nil
	}
	g.mu.Unlock()
	vms, err := backend.ListVMs(ctx, g.c)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.vms = backend.Timed[[]remote.VM]{V: vms, At: time.Now()}
	g.mu.Unlock()
	return vms, nil
}

// Dir is List cached for the TTL: one paged call sequence per directory and
// TTL, whatever the number of entries stat'ed.
func (v *GuestVM) Dir(ctx context.Context, dir string) ([]remote.GuestStat, error) {
	k := listKey{v.ref, path.Clean(dir)}
	if v.windows && k.dir == "/" {
		return v.drives(ctx)
	}
	v.g.mu.Lock()
	if t, ok := v.g.lists[k]; ok && t.Fresh(v.g.ttl) {
		v.g.mu.Unlock()
		return t.V, nil
	}
	gen := v.g.gen
	v.g.mu.Unlock()
	list, err := v.List(ctx, k.dir)
	if err != nil {
		return nil, err
	}
	v.g.mu.Lock()
	if v.g.gen == gen { // else a change raced with the listing: do not keep it
		v.g.lists[k] = backend.Timed[[]remote.GuestStat]{V: list, At: time.Now()}
	}
	v.g.mu.Unlock()
	return list, nil
}

// Lookup finds a name in a directory's cached list.
func (v *GuestVM) Lookup(ctx context.Context, dir, name string) (remote.GuestStat, error) {
	if v.windows && path.Clean(dir) == "/" {
		return v.lookupDrive(ctx, name)
	}
	list, err := v.Dir(ctx, dir)
	if err != nil {
		return remote.GuestStat{}, err
	}
	for _, s := range list {
		if s.Name == name {
			if s.Stale {
				return v.restat(ctx, path.Join(dir, name))
			}
			return s, nil
		}
	}
	return remote.GuestStat{}, remote.Errorf("ListFilesInGuest", v.name+":"+path.Join(dir, name), remote.ErrNotFound, "no such file")
}

// restat reads p's attributes again, for an entry known to be stale.
// A change made meanwhile (a file renamed into the directory p) may postdate
// what was read: an answer that raced with one is not stored, and p stays
// stale, so that it cannot hide the change (rsync skips its last utimensat
// of a directory if the directory shows its own time there).
func (v *GuestVM) restat(ctx context.Context, p string) (remote.GuestStat, error) {
	v.g.mu.Lock()
	gen := v.g.gen
	v.g.mu.Unlock()
	s, err := v.Stat(ctx, p)
	if err != nil {
		if backend.IsKind(err, remote.ErrNotFound) {
			v.forget(p)
		}
		return remote.GuestStat{}, err
	}
	v.g.mu.Lock()
	if v.g.gen == gen {
		v.g.gen++
		v.set(p, s)
	}
	v.g.mu.Unlock()
	return s, nil
}

// forget drops the cached lists a failed change to p may have made stale:
// below p, and p's parent's.
func (v *GuestVM) forget(p string) {
	v.change(func() {
		v.dropTree(p)
		v.dropList(path.Dir(path.Clean(p)))
	})
}

// after updates the cached lists once a change is done: ok runs when it
// worked; a failure may have changed anything about the paths.
func (v *GuestVM) after(err error, ok func(), paths ...string) error {
	if err == nil {
		ok()
		return nil
	}
	for _, p := range paths {
		v.forget(p)
	}
	return err
}

// GuestVM is one VM's guest filesystem.
type GuestVM struct {
	g       *Guests
	ref     types.ManagedObjectReference
	name    string
	windows bool // drives at the top level (guestwin.go)
}

// VM returns the guest of a VM. It makes no call.
func (g *Guests) VM(vm remote.VM) *GuestVM {
	return &GuestVM{g: g, ref: types.ManagedObjectReference(vm.Ref), name: vm.Name, windows: vm.Windows}
}

// Name is the VM's name.
func (v *GuestVM) Name() string { return v.name }

// fileManager returns the VM's file manager, made once per login.
func (v *GuestVM) fileManager(ctx context.Context) (*guest.FileManager, error) {
	vim := v.g.c.Vim()
	v.g.mu.Lock()
	e, ok := v.g.fms[v.ref]
	v.g.mu.Unlock()
	if ok && e.vim == vim {
		return e.fm, nil
	}
	fm, err := guest.NewOperationsManager(vim, v.ref).FileManager(ctx)
	if err != nil {
		return nil, err
	}
	v.g.mu.Lock()
	v.g.fms[v.ref] = fmEntry{vim: vim, fm: fm}
	v.g.mu.Unlock()
	return fm, nil
}

// do runs one guest call with the VM's login, through Conn.Do (deadline,
// re-login, classification); on names the VM and guest path.
func (v *GuestVM) do(ctx context.Context, call, p string, fn func(context.Context, *guest.FileManager, types.BaseGuestAuthentication) error) error {
	on := v.name + ":" + p
	login := v.g.logins.For(v.name)
	if login == nil {
		return remote.Errorf(call, on, remote.ErrPermission, "no guest login for this VM (--guest-login, --guest-login-file)")
	}
	pass, _ := login.Password()
	auth := &types.NamePasswordAuthentication{Username: login.Username(), Password: pass}
	return v.g.c.Do(ctx, call, on, func(ctx context.Context) error {
		fm, err := v.fileManager(ctx)
		if err != nil {
			return err
		}
		return backend.GuestFault(call, on, fn(ctx, fm, auth))
	})
}

func statOf(f types.GuestFileInfo) remote.GuestStat {
	s := remote.GuestStat{Name: path.Base(f.Path), Size: f.Size, UID: -1, GID: -1}
	switch types.GuestFileType(f.Type) {
	case types.GuestFileTypeDirectory:
		s.Type = remote.GuestDir
	case types.GuestFileTypeSymlink:
		s.Type = remote.GuestSymlink
	}
	if f.Attributes == nil {
		return s
	}
	if w, ok := f.Attributes.(*types.GuestWindowsFileAttributes); ok {
		s.Mode = winMode(s.Type, w.ReadOnly != nil && *w.ReadOnly)
	}
	a := f.Attributes.GetGuestFileAttributes()
	if a.ModificationTime != nil {
		s.Mtime = *a.ModificationTime
	}
	if a.AccessTime != nil {
		s.Atime = *a.AccessTime
	}
	s.Target = a.SymlinkTarget
	if px, ok := f.Attributes.(*types.GuestPosixFileAttributes); ok {
		s.Mode = uint32(px.Permissions) & 0o7777 // stat(2) format: drop the type bits
		if px.OwnerId != nil {
			s.UID = int64(*px.OwnerId)
		}
		if px.GroupId != nil {
			s.GID = int64(*px.GroupId)
		}
	}
	return s
}

// List lists a directory: one ListFilesInGuest sequence, paged by the
// guest's "remaining" count, without "." and "..".
func (v *GuestVM) List(ctx context.Context, dir string) ([]remote.GuestStat, error) {
	return v.list(ctx, "ListFilesInGuest", dir, "")
}

func (v *GuestVM) list(ctx context.Context, call, dir, pattern string) ([]remote.GuestStat, error) {
	if v.windows && path.Clean(dir) == "/" {
		return v.drives(ctx)
	}
	dir, err := v.gpath(dir)
	if err != nil {
		return nil, err
	}
	var out []remote.GuestStat
	index := int32(0)
	for {
		var res *types.GuestListFileInfo
		err := v.do(ctx, call, dir, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) (err error) {
			res, err = fm.ListFiles(ctx, auth, dir, index, 0, pattern)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, f := range res.Files {
			if s := statOf(f); s.Name != "." && s.Name != ".." {
				out = append(out, s)
			}
		}
		index += int32(len(res.Files))
		if res.Remaining <= 0 || len(res.Files) == 0 {
			return out, nil
		}
	}
}

// Stat describes one path: its parent listed with a pattern matching only
// its name (listing the path itself would give a directory's contents).
func (v *GuestVM) Stat(ctx context.Context, p string) (remote.GuestStat, error) {
	p = path.Clean(p)
	if p == "/" {
		return remote.GuestStat{Name: "/", Type: remote.GuestDir, Mode: 0o755, UID: -1, GID: -1}, nil
	}
	dir, name := path.Split(p)
	if v.windows && path.Clean(dir) == "/" {
		return v.lookupDrive(ctx, name)
	}
	list, err := v.list(ctx, "ListFilesInGuest", dir, "^"+regexp.QuoteMeta(name)+"$")
	if err != nil {
		return remote.GuestStat{}, err
	}
	for _, s := range list {
		if s.Name == name {
			return s, nil
		}
	}
	return remote.GuestStat{}, remote.Errorf("ListFilesInGuest", v.name+":"+p, remote.ErrNotFound, "no such file")
}

// Mkdir makes a directory, applies mode if it is not 0 and differs from
// what the guest gave it, and returns its attributes as read back.
func (v *GuestVM) Mkdir(ctx context.Context, p string, mode uint32) (remote.GuestStat, error) {
	gp, err := v.target(p)
	if err != nil {
		return remote.GuestStat{}, err
	}
	err = v.do(ctx, "MakeDirectoryInGuest", gp, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) error {
		return fm.MakeDirectory(ctx, auth, gp, false)
	})
	if err != nil {
		v.forget(p)
		return remote.GuestStat{}, err
	}
	s, err := v.Stat(ctx, p)
	if err != nil {
		v.forget(p)
		return remote.GuestStat{}, err
	}
	if mode &= 0o7777; mode != 0 && s.Mode != mode && !v.windows {
		if err := v.Chattr(ctx, p, remote.GuestAttr{Mode: &mode}); err != nil {
			return remote.GuestStat{}, err
		}
		s.Mode = mode
	}
	v.Noted(p, s)
	v.emptyDir(p)
	return s, nil
}

// Rmdir removes an empty directory.
func (v *GuestVM) Rmdir(ctx context.Context, p string) error {
	gp, err := v.target(p)
	if err != nil {
		return err
	}
	err = v.do(ctx, "DeleteDirectoryInGuest", gp, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) error {
		return fm.DeleteDirectory(ctx, auth, gp, false)
	})
	return v.after(err, func() { v.change(func() { v.gone(p) }) }, p)
}

// Remove removes a file or symlink.
func (v *GuestVM) Remove(ctx context.Context, p string) error {
	gp, err := v.target(p)
	if err != nil {
		return err
	}
	err = v.do(ctx, "DeleteFileInGuest", gp, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) error {
		return fm.DeleteFile(ctx, auth, gp)
	})
	return v.after(err, func() { v.change(func() { v.gone(p) }) }, p)
}

// MoveFile renames a file (or symlink), replacing dst if overwrite.
func (v *GuestVM) MoveFile(ctx context.Context, src, dst string, overwrite bool) error {
	err := v.moveFile(ctx, src, dst, overwrite)
	return v.after(err, func() { v.renamed(src, dst) }, src, dst)
}

func (v *GuestVM) moveFile(ctx context.Context, src, dst string, overwrite bool) error {
	gsrc, gdst, err := v.targets(src, dst)
	if err != nil {
		return err
	}
	return v.do(ctx, "MoveFileInGuest", gsrc, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) error {
		return fm.MoveFile(ctx, auth, gsrc, gdst, overwrite)
	})
}

// targets is target of both paths of a move.
func (v *GuestVM) targets(src, dst string) (string, string, error) {
	gsrc, err := v.target(src)
	if err != nil {
		return "", "", err
	}
	gdst, err := v.target(dst)
	return gsrc, gdst, err
}

// MoveDir renames a directory; an existing dst is ErrExists (the API has no
// overwrite for directories).
func (v *GuestVM) MoveDir(ctx context.Context, src, dst string) error {
	gsrc, gdst, err := v.targets(src, dst)
	if err != nil {
		return err
	}
	err = v.do(ctx, "MoveDirectoryInGuest", gsrc, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) error {
		return fm.MoveDirectory(ctx, auth, gsrc, gdst)
	})
	return v.after(err, func() { v.renamed(src, dst) }, src, dst)
}

// Chattr changes mode, owner and times in one ChangeFileAttributesInGuest.
func (v *GuestVM) Chattr(ctx context.Context, p string, a remote.GuestAttr) error {
	if v.windows {
		a.UID, a.GID = nil, nil // no owner on Windows: chown changes nothing
	}
	if a.Empty() {
		return nil
	}
	gp, err := v.target(p)
	if err != nil {
		return err
	}
	err = v.do(ctx, "ChangeFileAttributesInGuest", gp, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) error {
		return fm.ChangeFileAttributes(ctx, auth, gp, v.attrs(a))
	})
	return v.after(err, func() { v.attrsSet(p, a) }, p)
}

// transferURL fixes up a transfer URL (host "*", thumbprint of the host).
func transferURL(ctx context.Context, fm *guest.FileManager, raw string) (*url.URL, error) {
	return fm.TransferURL(ctx, raw)
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ID names the VM (its managed object id), stable across renames.
func (v *GuestVM) ID() string { return v.ref.Value }

// MoRef is the VM's managed object id (vm-42), as govc shows it.
func (v *GuestVM) MoRef() string { return v.ref.Value }
