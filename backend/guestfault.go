package backend

import (
	"errors"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/types"
)

// Kinds only guest files have.
var (
	ErrIsDir  = errors.New("is a directory")  // EISDIR: NotAFile where a directory is
	ErrNotDir = errors.New("not a directory") // ENOTDIR
)

// guestFaults maps the faults of GuestFileManager calls to kinds. It is
// matched with fault.Is, which sees faults as they come off the wire (values
// such as types.FileNotFound, not pointers).
var guestFaults = []struct {
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
}

// guestFault classifies the faults of guest calls, and leaves every other
// error (NotAuthenticated above all, which Conn.Do answers by logging in
// again) for Conn to classify.
func guestFault(call, on string, err error) error {
	if err == nil {
		return nil
	}
	for _, m := range guestFaults {
		if fault.Is(err, m.fault) {
			return newError(call, on, m.kind, err)
		}
	}
	return err
}
