package backend

import (
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/remote"
)

// Kinds only guest files have.
var ()

// faultTable maps SOAP faults to kinds, for every call. It is matched with
// fault.Is, which sees faults as they come off the wire (values such as
// types.FileNotFound, not pointers).
var faultTable = []struct {
	fault types.BaseMethodFault
	kind  error
}{
	{&types.InvalidGuestLogin{}, remote.ErrPermission},
	{&types.GuestPermissionDenied{}, remote.ErrPermission},
	{&types.InvalidPowerState{}, remote.ErrHostDown},
	{&types.GuestOperationsUnavailable{}, remote.ErrHostDown},
	{&types.FileNotFound{}, remote.ErrNotFound},
	{&types.ManagedObjectNotFound{}, remote.ErrNotFound},
	{&types.FileAlreadyExists{}, remote.ErrExists},
	{&types.DirectoryNotEmpty{}, remote.ErrNotEmpty},
	{&types.NotAFile{}, remote.ErrIsDir},
	{&types.NotADirectory{}, remote.ErrNotDir},
	{&types.FileNameTooLong{}, remote.ErrInvalid},
	{&types.InvalidArgument{}, remote.ErrInvalid},
	{&types.NoDiskSpace{}, remote.ErrNoSpace},
	{&types.FileTooLarge{}, remote.ErrNoSpace},
	{&types.OperationNotSupportedByGuest{}, remote.ErrUnsupported},
	{&types.OperationDisabledByGuest{}, remote.ErrUnsupported},
	{&types.GuestComponentsOutOfDate{}, remote.ErrUnsupported},
	{&types.TaskInProgress{}, remote.ErrBusy},
	{&types.InvalidLogin{}, remote.ErrPermission},
	{&types.NoPermission{}, remote.ErrPermission},
	{&types.NotAuthenticated{}, remote.ErrPermission},
	{&types.HostNotConnected{}, remote.ErrHostDown},
	{&types.NotFound{}, remote.ErrNotFound},
	{&types.DuplicateName{}, remote.ErrExists},
	{&types.AlreadyExists{}, remote.ErrExists},
	{&types.ResourceInUse{}, remote.ErrBusy},
	{&types.InvalidState{}, remote.ErrBusy},
	{&types.NotSupported{}, remote.ErrUnsupported},
	{&types.OutOfBounds{}, remote.ErrNoSpace},
}

// GuestFault classifies the faults of guest calls, and leaves NotAuthenticated
// for Conn.Do, which answers it by logging in again.
func GuestFault(call, on string, err error) error {
	if err == nil || isNotAuthenticated(err) || !(soap.IsSoapFault(err) || soap.IsVimFault(err)) {
		return err
	}
	return NewError(call, on, faultKind(err), err)
}
