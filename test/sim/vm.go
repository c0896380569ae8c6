package sim

import (
	"context"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// VM finds a VM of the default datacenter by name through c, powering it off
// first if off is set (exports need powered-off VMs).
func VM(ctx context.Context, c *vim25.Client, name string, off bool) (*object.VirtualMachine, error) {
	f := find.NewFinder(c)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		return nil, err
	}
	vm, err := f.SetDatacenter(dc).VirtualMachine(ctx, name)
	if err != nil || !off {
		return vm, err
	}
	task, err := vm.PowerOff(ctx)
	if err == nil {
		err = task.Wait(ctx)
	}
	return vm, err
}

// DiskKeys are the device keys of a VM's disks, in device order.
func DiskKeys(ctx context.Context, vm *object.VirtualMachine) ([]int32, error) {
	devs, err := vm.Device(ctx)
	if err != nil {
		return nil, err
	}
	var keys []int32
	for _, d := range devs.SelectByType((*types.VirtualDisk)(nil)) {
		keys = append(keys, d.GetVirtualDevice().Key)
	}
	return keys, nil
}
