// Package remote holds what crosses the seam between fs and the backend:
// the server's objects as plain data (libraries, items, files, VMs, guest
// file attributes, export targets) and the kinds of failure, which fs maps
// to errno in one table. It imports no vSphere code, so fs, the backend and
// tests' fakes can all share it.
package remote

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Kinds of failure, as the filesystem needs to tell them apart.
var (
	ErrNotFound     = errors.New("not found")               // ENOENT
	ErrPermission   = errors.New("permission denied")       // EACCES
	ErrHostDown     = errors.New("host unavailable")        // EHOSTDOWN: powered off, no guest agent
	ErrBusy         = errors.New("busy")                    // EBUSY: in use, powered on, session taken
	ErrExists       = errors.New("already exists")          // EEXIST
	ErrNotEmpty     = errors.New("not empty")               // ENOTEMPTY
	ErrReadOnly     = errors.New("read-only")               // EROFS
	ErrInvalid      = errors.New("invalid argument")        // EINVAL
	ErrUnsupported  = errors.New("not supported")           // ENOTSUP
	ErrStale        = errors.New("changed on the server")   // ESTALE
	ErrNoSpace      = errors.New("no space")                // ENOSPC
	ErrIO           = errors.New("I/O error")               // EIO: anything else
	ErrIsDir        = errors.New("is a directory")          // EISDIR: NotAFile where a directory is
	ErrNotDir       = errors.New("not a directory")         // ENOTDIR
	ErrNotPermitted = errors.New("operation not permitted") // EPERM: what a guest cannot do (a Windows drive)
)

// ErrStalled is the underlying error (Error.Err, under the kind ErrIO) of a
// transfer cancelled for moving no byte for --timeout: an upload that
// stalled is not tried again, as it already took the deadline.
var ErrStalled = errors.New("no data received")

// Error is a failed API call: which call, on what, and the server's fault.
type Error struct {
	Call  string // API call, e.g. "downloadsession/file:prepare"
	On    string // object the call was about (library item, VM, guest path)
	Fault string // the server's fault or message, as it said it
	Kind  error  // one of the sentinels above
	Err   error  // underlying error, if any

	reported atomic.Bool // logged once: every reader it fails gets it, one log line
}

// Reported says whether the failure was already reported (logged), and
// marks it so: a transfer's failure reaches every read waiting for it, and
// the log should say it once.
func (e *Error) Reported() bool { return e.reported.Swap(true) }

func (e *Error) Error() string {
	s := e.Call
	if e.On != "" {
		s += " " + e.On
	}
	if e.Fault != "" {
		s += ": " + e.Fault
	}
	return s
}

// Is lets errors.Is(err, remote.ErrNotFound) work.
func (e *Error) Is(target error) bool { return target == e.Kind }

func (e *Error) Unwrap() error { return e.Err }

// Errorf makes an *Error of a kind with a formatted fault text.
func Errorf(call, on string, kind error, format string, args ...any) *Error {
	return &Error{Call: call, On: on, Kind: kind, Fault: fmt.Sprintf(format, args...)}
}
