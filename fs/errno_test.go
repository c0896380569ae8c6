package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/remote"
)

// Every kind maps to its errno, wrapped or not; a failure is logged once,
// in one line naming path, call and fault, however many callers it fails.
func TestErrnoTable(t *testing.T) {
	want := map[error]syscall.Errno{
		remote.ErrNotFound: syscall.ENOENT, remote.ErrPermission: syscall.EACCES, remote.ErrHostDown: syscall.EHOSTDOWN,
		remote.ErrBusy: syscall.EBUSY, remote.ErrExists: syscall.EEXIST, remote.ErrNotEmpty: syscall.ENOTEMPTY,
		remote.ErrReadOnly: syscall.EROFS, remote.ErrInvalid: syscall.EINVAL, remote.ErrUnsupported: syscall.ENOTSUP,
		remote.ErrStale: syscall.ESTALE, cache.ErrChanged: syscall.ESTALE, remote.ErrNoSpace: syscall.ENOSPC,
		remote.ErrIsDir: syscall.EISDIR, remote.ErrNotDir: syscall.ENOTDIR, remote.ErrNotPermitted: syscall.EPERM,
		remote.ErrIO: syscall.EIO, context.Canceled: syscall.EINTR, errors.New("other"): syscall.EIO,
	}
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	for kind, errno := range want {
		if got := toErrno(log, "p", remote.Errorf("call", "on", kind, "fault")); got != errno {
			t.Errorf("%v as *remote.Error: %v, want %v", kind, got, errno)
		}
		if got := toErrno(log, "p", fmt.Errorf("wrapped: %w", kind)); got != errno {
			t.Errorf("%v wrapped: %v, want %v", kind, got, errno)
		}
	}
	if got := toErrno(log, "p", fmt.Errorf("x: %w", syscall.EXDEV)); got != syscall.EXDEV {
		t.Errorf("an errno passes through: %v", got)
	}

	var buf bytes.Buffer
	log = slog.New(slog.NewTextHandler(&buf, nil))
	err := remote.Errorf("downloadsession/file:prepare", "item-1", remote.ErrBusy, "ResourceInUse")
	for range 3 {
		toErrno(log, "libraries/L/I/f", err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one log line, got %q", lines)
	}
	for _, s := range []string{"path=libraries/L/I/f", "call=downloadsession/file:prepare", "fault=ResourceInUse", "level=WARN"} {
		if !strings.Contains(lines[0], s) {
			t.Errorf("log line %q lacks %q", lines[0], s)
		}
	}
}
