package guest

import (
	"context"
	"errors"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/guest"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// Windows guests. The filesystem hands this package POSIX-style paths for
// every guest: for a Windows guest the first element is a drive, so
// "/C:/Users/x" is the guest's C:\Users\x and "/C:" its C:\. The top level
// ("/") is not a guest directory but the set of drives, which no call
// lists: each letter C..Z is probed with a ListFilesInGuest of its root
// (maxResults 1), and what was found is believed for driveTTL. A lookup of
// one drive probes that drive alone.
//
// Windows attributes are shown as a mode: directories 0755, files 0644, or
// 0444 with the readOnly attribute; no owner. chmod sets readOnly (no owner
// write bit) or clears it; chown changes nothing; times are set as on any
// guest (NTFS keeps 100 ns).

// driveLetters are the letters probed: A: and B: are floppy drives by
// convention, and probing them can hang on old guests.
const driveLetters = "CDEFGHIJKLMNOPQRSTUVWXYZ"

// driveTTL is how long a drive probe is believed: drives come and go
// rarely, and listing them all is 24 calls.
func (g *Guests) driveTTL() time.Duration { return max(g.ttl, time.Minute) }

// Windows says whether the guest is Windows (drives at the top level).
func (v *GuestVM) Windows() bool { return v.windows }

// isDrive says whether a top-level name is a drive, "C:".."Z:".
func isDrive(name string) bool {
	return len(name) == 2 && name[1] == ':' && strings.IndexByte(driveLetters, name[0]) >= 0
}

// winNameOK says whether Windows takes name as a file name: none of
// \ / : * ? " < > | or control characters (":" would name a data stream).
func winNameOK(name string) bool {
	for _, r := range name {
		if r < 32 || strings.ContainsRune(`\/:*?"<>|`, r) {
			return false
		}
	}
	return name != ""
}

// gpath is the guest's own path for p: p itself for POSIX guests; for
// Windows guests C:\Users\x for /C:/Users/x (and C:\ for /C:).
func (v *GuestVM) gpath(p string) (string, error) {
	if !v.windows {
		return p, nil
	}
	p = path.Clean(p)
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if p == "/" || !isDrive(parts[0]) {
		return "", remote.Errorf("", v.name+":"+p, remote.ErrNotPermitted, "the top level of a Windows guest holds only its drives")
	}
	for _, c := range parts[1:] {
		if !winNameOK(c) {
			return "", remote.Errorf("", v.name+":"+p, remote.ErrInvalid, "%q is not a Windows file name", c)
		}
	}
	if len(parts) == 1 {
		return parts[0] + `\`, nil
	}
	return strings.Join(parts, `\`), nil
}

// target is gpath for a path to be changed: on Windows, neither the top
// level nor a drive's root can be made, removed, moved or changed.
func (v *GuestVM) target(p string) (string, error) {
	gp, err := v.gpath(p)
	if err == nil && v.windows && path.Dir(path.Clean(p)) == "/" {
		err = remote.Errorf("", v.name+":"+gp, remote.ErrNotPermitted, "a drive cannot be made, removed, moved or changed")
	}
	return gp, err
}

// CanCreate says whether a file could be made at p (a name Windows takes,
// in a drive), before anything is staged for it.
func (v *GuestVM) CanCreate(p string) error {
	_, err := v.target(p)
	return err
}

// winMode is the mode a Windows entry is shown with.
func winMode(t remote.GuestFileType, readOnly bool) uint32 {
	switch {
	case t == remote.GuestDir:
		return 0o755
	case readOnly:
		return 0o444
	}
	return 0o644
}

// windowsAttrs are a as Windows attributes: times, and readOnly from the
// owner write bit of the mode; owner and group have no equivalent.
func windowsAttrs(a remote.GuestAttr) *types.GuestWindowsFileAttributes {
	w := &types.GuestWindowsFileAttributes{}
	w.ModificationTime, w.AccessTime = a.Mtime, a.Atime
	if a.Mode != nil {
		ro := *a.Mode&0o200 == 0
		w.ReadOnly = &ro
	}
	return w
}

// attrs is a as the guest takes attributes.
func (v *GuestVM) attrs(a remote.GuestAttr) types.BaseGuestFileAttributes {
	if v.windows {
		return windowsAttrs(a)
	}
	return posixAttrs(a)
}

// driveStat is a drive as the top level lists it. The guest reports no
// attributes of a drive's root: it is shown as a directory with the time
// the mount began.
func (v *GuestVM) driveStat(name string) remote.GuestStat {
	return remote.GuestStat{Name: name, Type: remote.GuestDir, Mode: 0o755, UID: -1, GID: -1, Mtime: v.g.born, Atime: v.g.born}
}

// drives lists the drives found, in letter order.
func (v *GuestVM) drives(ctx context.Context) ([]remote.GuestStat, error) {
	found := make([]bool, len(driveLetters))
	// The probes share the one deadline, and the first failure ends them
	// all: a hung guest costs one --timeout, not one per round of probes.
	pctx, cancel := context.WithTimeout(ctx, v.g.c.Config.Timeout)
	defer cancel()
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 6)
	for i := range driveLetters {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var err error
			if found[i], err = v.drive(pctx, driveLetters[i]); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	var out []remote.GuestStat
	for i := range driveLetters {
		if found[i] {
			out = append(out, v.driveStat(driveLetters[i:i+1]+":"))
		}
	}
	return out, nil
}

// drive says whether the guest has drive letter, from a fresh probe or one
// made now.
func (v *GuestVM) drive(ctx context.Context, letter byte) (bool, error) {
	v.g.mu.Lock()
	t, ok := v.g.drives[v.ref][letter]
	v.g.mu.Unlock()
	if ok && t.Fresh(v.g.driveTTL()) {
		return t.V, nil
	}
	root := string(letter) + `:\`
	err := v.do(ctx, "ListFilesInGuest", root, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) error {
		_, err := fm.ListFiles(ctx, auth, root, 0, 1, "")
		return err
	})
	if err != nil && !noDrive(err) {
		return false, err
	}
	v.g.mu.Lock()
	if v.g.drives[v.ref] == nil {
		v.g.drives[v.ref] = map[byte]backend.Timed[bool]{}
	}
	v.g.drives[v.ref][letter] = backend.Timed[bool]{V: err == nil, At: time.Now()}
	v.g.mu.Unlock()
	return err == nil, nil
}

// noDrive says whether a failed probe means "no such drive": the guest
// answered with a fault about the path (not found, invalid, or another
// file fault, as an empty CD-ROM drive gives), not one about the VM, the
// login or the connection.
func noDrive(err error) bool {
	for _, k := range []error{remote.ErrPermission, remote.ErrHostDown, remote.ErrBusy, remote.ErrUnsupported, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, k) {
			return false
		}
	}
	var be *remote.Error
	return errors.As(err, &be) && be.Err != nil && (soap.IsSoapFault(be.Err) || soap.IsVimFault(be.Err))
}

// lookupDrive is Lookup at the top level of a Windows guest.
func (v *GuestVM) lookupDrive(ctx context.Context, name string) (remote.GuestStat, error) {
	if isDrive(name) {
		ok, err := v.drive(ctx, name[0])
		if err != nil {
			return remote.GuestStat{}, err
		}
		if ok {
			return v.driveStat(name), nil
		}
	}
	return remote.GuestStat{}, remote.Errorf("ListFilesInGuest", v.name+":"+name, remote.ErrNotFound, "no such drive")
}

// posixAttrs are a as the guest operations API takes them.
func posixAttrs(a remote.GuestAttr) *types.GuestPosixFileAttributes {
	px := &types.GuestPosixFileAttributes{OwnerId: a.UID, GroupId: a.GID}
	px.ModificationTime, px.AccessTime = a.Mtime, a.Atime
	if a.Mode != nil {
		px.Permissions = int64(*a.Mode & 0o7777)
	}
	return px
}
