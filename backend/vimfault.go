package backend

import (
	"context"
	"errors"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/types"
)

// faultKinds maps vSphere faults to the kinds fs turns into errno, most
// specific first (fault.Is matches by type, through task errors too).
var faultKinds = []struct {
	fault types.BaseMethodFault
	kind  error
}{
	{&types.InvalidPowerState{}, ErrBusy},
	{&types.TaskInProgress{}, ErrBusy},
	{&types.FileLocked{}, ErrBusy},
	{&types.ResourceInUse{}, ErrBusy},
	{&types.InvalidState{}, ErrBusy},
	{&types.ManagedObjectNotFound{}, ErrNotFound},
	{&types.NotFound{}, ErrNotFound},
	{&types.FileNotFound{}, ErrNotFound},
	{&types.NoPermission{}, ErrPermission},
	{&types.DuplicateName{}, ErrExists},
	{&types.AlreadyExists{}, ErrExists},
	{&types.InvalidName{}, ErrInvalid},
	{&types.InvalidArgument{}, ErrInvalid},
	{&types.NotSupported{}, ErrUnsupported},
	{&types.NoDiskSpace{}, ErrNoSpace},
}

// vimError wraps a failed vSphere call (SOAP fault, task error, transport
// error) into an *Error whose kind comes from the fault.
func vimError(call, on string, err error) *Error {
	var be *Error
	if errors.As(err, &be) {
		return be
	}
	kind := ErrIO
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		for _, f := range faultKinds {
			if fault.Is(err, f.fault) {
				kind = f.kind
				break
			}
		}
	}
	return newError(call, on, kind, err)
}
