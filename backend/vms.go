package backend

import (
	"context"
	"sort"
	"strings"

	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/remote"
)

// ListVMs lists the VMs (not templates) of the whole inventory, by name, in
// one property collector round trip.
func ListVMs(ctx context.Context, c *Conn) ([]remote.VM, error) {
	var vms []mo.VirtualMachine
	err := c.Do(ctx, "RetrieveProperties", "VirtualMachine", func(ctx context.Context) error {
		vc := c.Vim()
		v, err := view.NewManager(vc).CreateContainerView(ctx, vc.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
		if err != nil {
			return err
		}
		defer DestroyView(ctx, v)
		return v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "runtime.powerState", "config.template", "guest.guestFamily", "config.guestId"}, &vms)
	})
	if err != nil {
		return nil, err
	}
	out := make([]remote.VM, 0, len(vms))
	for _, m := range vms {
		if m.Config != nil && m.Config.Template {
			continue
		}
		vm := remote.VM{Ref: remote.Ref(m.Self), Name: m.Name, On: m.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn}
		if m.Guest != nil && m.Guest.GuestFamily == string(types.VirtualMachineGuestOsFamilyWindowsGuest) ||
			m.Config != nil && strings.HasPrefix(m.Config.GuestId, "win") {
			vm.Windows = true
		}
		out = append(out, vm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
