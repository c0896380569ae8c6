package backend

import (
	"errors"

	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Kinds only guest files have.
var (
	ErrIsDir  = errors.New("is a directory")  // EISDIR: NotAFile where a directory is
	ErrNotDir = errors.New("not a directory") // ENOTDIR
)

// faultTable maps SOAP faults to kinds, for every call. It is matched with
// fault.Is, which sees faults as they come off the wire (values such as
// types.FileNotFound, not pointers).
var faultTable = []struct {
	fault types.BaseMethodFault
	kind  error
}{
	{&types.InvalidGuestLogin{}, ErrPermission},
	{&types.GuestPermissionDenied{}, ErrPermission},
	{&types.InvalidPowerState{}, ErrHostDown},
	{&types.GuestOperationsUnavailable{}, ErrHostDown},
	{&types.FileNotFound{}, ErrNotFound},
	{&types.ManagedObjectNotFound{}, ErrNotFound},
	{&types.FileAlreadyExists{}, ErrExists},
	{&types.DirectoryNotEmpty{}, ErrNotEmpty},
	{&types.NotAFile{}, ErrIsDir},
	{&types.NotADirectory{}, ErrNotDir},
	{&types.FileNameTooLong{}, ErrInvalid},
	{&types.InvalidArgument{}, ErrInvalid},
	{&types.NoDiskSpace{}, ErrNoSpace},
	{&types.FileTooLarge{}, ErrNoSpace},
	{&types.OperationNotSupportedByGuest{}, ErrUnsupported},
	{&types.OperationDisabledByGuest{}, ErrUnsupported},
	{&types.GuestComponentsOutOfDate{}, ErrUnsupported},
	{&types.TaskInProgress{}, ErrBusy},
	{&types.InvalidLogin{}, ErrPermission},
	{&types.NoPermission{}, ErrPermission},
	{&types.NotAuthenticated{}, ErrPermission},
	{&types.HostNotConnected{}, ErrHostDown},
	{&types.NotFound{}, ErrNotFound},
	{&types.DuplicateName{}, ErrExists},
	{&types.AlreadyExists{}, ErrExists},
	{&types.ResourceInUse{}, ErrBusy},
	{&types.InvalidState{}, ErrBusy},
	{&types.NotSupported{}, ErrUnsupported},
	{&types.OutOfBounds{}, ErrNoSpace},
}

// guestFault classifies the faults of guest calls, and leaves NotAuthenticated
// for Conn.Do, which answers it by logging in again.
func guestFault(call, on string, err error) error {
	if err == nil || isNotAuthenticated(err) || !(soap.IsSoapFault(err) || soap.IsVimFault(err)) {
		return err
	}
	return newError(call, on, faultKind(err), err)
}
