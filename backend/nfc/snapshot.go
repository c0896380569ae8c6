package nfc

import (
	"context"
	"path"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// Snapshots lists a VM's snapshots, parents before children.
func Snapshots(ctx context.Context, c *vim25.Client, vm types.ManagedObjectReference) ([]remote.Snapshot, error) {
	var o mo.VirtualMachine
	if err := property.DefaultCollector(c).RetrieveOne(ctx, vm, []string{"snapshot"}, &o); err != nil {
		return nil, backend.VimError("RetrieveProperties", vm.Value, err)
	}
	return flattenSnapshots(o.Snapshot), nil
}

// flattenSnapshots lists a snapshot tree, parents before children.
func flattenSnapshots(info *types.VirtualMachineSnapshotInfo) []remote.Snapshot {
	var list []remote.Snapshot
	var walk func(parent string, tree []types.VirtualMachineSnapshotTree)
	walk = func(parent string, tree []types.VirtualMachineSnapshotTree) {
		for _, s := range tree {
			p := path.Join(parent, s.Name)
			list = append(list, remote.Snapshot{Name: s.Name, Path: p, Ref: remote.Ref(s.Snapshot), Created: s.CreateTime, Quiesced: s.Quiesced})
			walk(p, s.ChildSnapshotList)
		}
	}
	if info != nil {
		walk("", info.RootSnapshotList)
	}
	return list
}

// FindSnapshot finds a VM's snapshot by name or path: ErrNotFound if none,
// ErrInvalid if the name is ambiguous.
func FindSnapshot(ctx context.Context, c *vim25.Client, vm types.ManagedObjectReference, name string) (types.ManagedObjectReference, error) {
	list, err := Snapshots(ctx, c, vm)
	if err != nil {
		return types.ManagedObjectReference{}, err
	}
	var found []types.ManagedObjectReference
	for _, s := range list {
		if s.Name == name || s.Path == name {
			found = append(found, types.ManagedObjectReference(s.Ref))
		}
	}
	switch len(found) {
	case 0:
		return types.ManagedObjectReference{}, remote.Errorf("FindSnapshot", vm.Value+"@"+name, remote.ErrNotFound, "no such snapshot")
	case 1:
		return found[0], nil
	}
	return types.ManagedObjectReference{}, remote.Errorf("FindSnapshot", vm.Value+"@"+name, remote.ErrInvalid, "%d snapshots have this name", len(found))
}

// CreateSnapshot snapshots a VM's disks for a backup: no memory, quiesced
// when VMware Tools run in the guest (so file systems are consistent).
// A snapshot of that name already there is ErrExists.
func CreateSnapshot(ctx context.Context, c *vim25.Client, vm types.ManagedObjectReference, name string) error {
	on := vm.Value + "@" + name
	if _, err := FindSnapshot(ctx, c, vm, name); err == nil {
		return remote.Errorf("CreateSnapshot", on, remote.ErrExists, "a snapshot of this name exists")
	} else if !backend.IsKind(err, remote.ErrNotFound) {
		return err
	}
	var o mo.VirtualMachine
	if err := property.DefaultCollector(c).RetrieveOne(ctx, vm, []string{"guest.toolsRunningStatus"}, &o); err != nil {
		return backend.VimError("RetrieveProperties", on, err)
	}
	quiesce := o.Guest != nil && o.Guest.ToolsRunningStatus == string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
	task, err := object.NewVirtualMachine(c, vm).CreateSnapshot(ctx, name, "created by vspherefs", false, quiesce)
	if err != nil {
		return backend.VimError("CreateSnapshot_Task", on, err)
	}
	if err := task.Wait(ctx); err != nil {
		return backend.VimError("CreateSnapshot_Task", on, err)
	}
	return nil
}

// RemoveSnapshot removes one snapshot (not its children), consolidating disks.
func RemoveSnapshot(ctx context.Context, c *vim25.Client, vm types.ManagedObjectReference, name string) error {
	on := vm.Value + "@" + name
	ref, err := FindSnapshot(ctx, c, vm, name)
	if err != nil {
		return err
	}
	return RemoveSnapshotRef(ctx, c, ref, on)
}

// RemoveSnapshotRef removes the snapshot ref (not its children),
// consolidating disks; on names it in errors.
func RemoveSnapshotRef(ctx context.Context, c *vim25.Client, ref types.ManagedObjectReference, on string) error {
	res, err := methods.RemoveSnapshot_Task(ctx, c, &types.RemoveSnapshot_Task{This: ref, Consolidate: types.NewBool(true)})
	if err != nil {
		return backend.VimError("RemoveSnapshot_Task", on, err)
	}
	if err := object.NewTask(c, res.Returnval).Wait(ctx); err != nil {
		return backend.VimError("RemoveSnapshot_Task", on, err)
	}
	return nil
}
