// Package backend is what the vSphere clients share: the connection (login,
// keep-alive, TLS and thumbprints), calls with retries and deadlines, the
// stall guard, SOAP fault mapping, the VM list and datastore figures. The
// clients per API are its subpackages, as govmomi has them: library
// (content libraries), guest (guest files) and nfc (exports and leases). It
// knows nothing of FUSE: failures are *remote.Error of a remote.Err* kind,
// which fs maps to errno in one table.
package backend

import (
	"errors"
	"regexp"
	"syscall"

	"github.com/vspherefs/vspherefs/remote"
)

// NewError wraps err from call on object into an *Error of the given kind.
func NewError(call, on string, kind error, err error) *remote.Error {
	fault := ""
	if err != nil {
		fault = redact(err.Error())
	}
	return &remote.Error{Call: call, On: on, Fault: fault, Kind: kind, Err: hideErrno(err)}
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

func IsKind(err, kind error) bool { return errors.Is(err, kind) }

// transferQuery matches the query of a URL in an error text: transfer URLs
// carry one-shot tokens and session ids there, which logs have no use for.
var transferQuery = regexp.MustCompile(`(https?://[^\s"?]+)\?[^\s"]*`)

func redact(s string) string { return transferQuery.ReplaceAllString(s, "$1?…") }
