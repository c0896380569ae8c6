// Package backend holds the vSphere clients vspherefs needs: login and
// keep-alive, TLS, content library sessions, the guest file manager and NFC
// export leases. It knows nothing of FUSE: failures are returned as errors
// wrapping the sentinels below, which fs maps to errno in one table.
package backend

import (
	"errors"
	"fmt"
	"regexp"
	"sync/atomic"
	"syscall"
)

// Kinds of failure, as the filesystem needs to tell them apart.
var (
	ErrNotFound    = errors.New("not found")             // ENOENT
	ErrPermission  = errors.New("permission denied")     // EACCES
	ErrHostDown    = errors.New("host unavailable")      // EHOSTDOWN: powered off, no guest agent
	ErrBusy        = errors.New("busy")                  // EBUSY: in use, powered on, session taken
	ErrExists      = errors.New("already exists")        // EEXIST
	ErrNotEmpty    = errors.New("not empty")             // ENOTEMPTY
	ErrReadOnly    = errors.New("read-only")             // EROFS
	ErrInvalid     = errors.New("invalid argument")      // EINVAL
	ErrUnsupported = errors.New("not supported")         // ENOTSUP
	ErrStale       = errors.New("changed on the server") // ESTALE
	ErrNoSpace     = errors.New("no space")              // ENOSPC
	ErrIO          = errors.New("I/O error")             // EIO: anything else
)

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

// Is lets errors.Is(err, backend.ErrNotFound) work.
func (e *Error) Is(target error) bool { return target == e.Kind }

func (e *Error) Unwrap() error { return e.Err }

// newError wraps err from call on object into an *Error of the given kind.
func newError(call, on string, kind error, err error) *Error {
	fault := ""
	if err != nil {
		fault = redact(err.Error())
	}
	return &Error{Call: call, On: on, Fault: fault, Kind: kind, Err: hideErrno(err)}
}

// hideErrno keeps a transport failure's syscall errno (ECONNRESET, …) out of
// an error's chain: the kind says what the caller sees, never the socket.
func hideErrno(err error) error {
	var en syscall.Errno
	if err != nil && errors.As(err, &en) {
		return &opaque{err}
	}
	return err
}

// Errorf makes an *Error of a kind with a formatted fault text.
func Errorf(call, on string, kind error, format string, args ...any) *Error {
	return &Error{Call: call, On: on, Kind: kind, Fault: fmt.Sprintf(format, args...)}
}

func isKind(err, kind error) bool { return errors.Is(err, kind) }

// transferQuery matches the query of a URL in an error text: transfer URLs
// carry one-shot tokens and session ids there, which logs have no use for.
var transferQuery = regexp.MustCompile(`(https?://[^\s"?]+)\?[^\s"]*`)

func redact(s string) string { return transferQuery.ReplaceAllString(s, "$1?…") }
