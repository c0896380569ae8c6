package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/remote"
)

// errnoTable maps the backend's kinds of failure to what the caller sees.
var errnoTable = []struct {
	kind  error
	errno syscall.Errno
}{
	{remote.ErrNotFound, syscall.ENOENT},
	{remote.ErrPermission, syscall.EACCES},
	{remote.ErrHostDown, syscall.EHOSTDOWN},
	{remote.ErrBusy, syscall.EBUSY},
	{remote.ErrExists, syscall.EEXIST},
	{remote.ErrNotEmpty, syscall.ENOTEMPTY},
	{remote.ErrReadOnly, syscall.EROFS},
	{remote.ErrInvalid, syscall.EINVAL},
	{remote.ErrUnsupported, syscall.ENOTSUP},
	{remote.ErrStale, syscall.ESTALE},
	{cache.ErrChanged, syscall.ESTALE},
	{remote.ErrNoSpace, syscall.ENOSPC},
	{remote.ErrIsDir, syscall.EISDIR},
	{remote.ErrNotDir, syscall.ENOTDIR},
	{remote.ErrNotPermitted, syscall.EPERM},
	{context.Canceled, syscall.EINTR},
}

// toErrno maps err to an errno and logs one line naming the path, the API
// call and the server's fault. Lookups of missing names are not logged.
func toErrno(log *slog.Logger, path string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	errno := syscall.EIO
	var en syscall.Errno
	if errors.As(err, &en) {
		errno = en
	} else {
		for _, m := range errnoTable {
			if errors.Is(err, m.kind) {
				errno = m.errno
				break
			}
		}
	}
	if errno == syscall.ENOENT || errno == syscall.EINTR {
		return errno
	}
	level := errnoLevel(errno)
	var be *remote.Error
	if errors.As(err, &be) {
		if be.Reported() {
			return errno // one log line per failure, however many reads it fails
		}
		log.Log(context.Background(), level, errno.Error(), "path", path, "call", be.Call, "fault", be.Fault)
	} else {
		log.Log(context.Background(), level, errno.Error(), "path", path, "err", err.Error())
	}
	return errno
}

// errnoLevel is how loud a failure is logged: a refusal the caller caused
// (or that the README documents) is INFO, a state of the server or of a VM
// that the user may have to change is WARN, a fault is ERROR.
func errnoLevel(errno syscall.Errno) slog.Level {
	switch errno {
	case syscall.ENOTEMPTY, syscall.EROFS, syscall.EPERM, syscall.EEXIST, syscall.EINVAL,
		syscall.ENOTSUP, syscall.EXDEV, syscall.EISDIR, syscall.ENOTDIR, syscall.ENAMETOOLONG:
		return slog.LevelInfo
	case syscall.EACCES, syscall.EBUSY, syscall.EHOSTDOWN, syscall.ESTALE, syscall.ENOSPC:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// unreachable is an empty listing, for a folder whose content cannot be
// reached in the VM's present state (a running VM's export, a powered-off
// VM's guest): a walk of the mount stays clean, and the log says why, at
// INFO, with what to do.
func unreachable(f *FS, path string, err error) gofs.DirStream {
	var be *remote.Error
	if errors.As(err, &be) {
		f.Log.Info("listed empty", "path", path, "call", be.Call, "fault", be.Fault)
	} else {
		f.Log.Info("listed empty", "path", path, "err", err.Error())
	}
	return gofs.NewListDirStream(nil)
}
