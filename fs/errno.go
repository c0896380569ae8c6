package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/cache"
)

// errnoTable maps the backend's kinds of failure to what the caller sees.
var errnoTable = []struct {
	kind  error
	errno syscall.Errno
}{
	{backend.ErrNotFound, syscall.ENOENT},
	{backend.ErrPermission, syscall.EACCES},
	{backend.ErrHostDown, syscall.EHOSTDOWN},
	{backend.ErrBusy, syscall.EBUSY},
	{backend.ErrExists, syscall.EEXIST},
	{backend.ErrNotEmpty, syscall.ENOTEMPTY},
	{backend.ErrReadOnly, syscall.EROFS},
	{backend.ErrInvalid, syscall.EINVAL},
	{backend.ErrUnsupported, syscall.ENOTSUP},
	{backend.ErrStale, syscall.ESTALE},
	{cache.ErrChanged, syscall.ESTALE},
	{backend.ErrNoSpace, syscall.ENOSPC},
	{backend.ErrIsDir, syscall.EISDIR},
	{backend.ErrNotDir, syscall.ENOTDIR},
	{backend.ErrNotPermitted, syscall.EPERM},
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
	var be *backend.Error
	if errors.As(err, &be) {
		if be.Reported() {
			return errno // one log line per failure, however many reads it fails
		}
		log.Error(errno.Error(), "path", path, "call", be.Call, "fault", be.Fault)
	} else {
		log.Error(errno.Error(), "path", path, "err", err.Error())
	}
	return errno
}
