package backend

import (
	"context"
	"errors"

	"github.com/vspherefs/vspherefs/remote"
)

// VimError wraps a failed vSphere call made without Conn.Do (SOAP fault,
// task error, transport error) into an *Error, its kind from faultKind, the
// one table. A cancelled context is returned as is, as classify does.
func VimError(call, on string, err error) error {
	var be *remote.Error
	if errors.As(err, &be) || errors.Is(err, context.Canceled) {
		return err
	}
	return NewError(call, on, faultKind(err), err)
}
