package sim

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// exporterRef names our exporter. It is in no registry on purpose: vcsim
// prefers an object found by `_this` over the one its Registry.Handler
// returns, so the handler retargets the call to this reference.
var exporterRef = types.ManagedObjectReference{Type: "VspherefsExporter", Value: "exporter"}

// exporter answers the calls vcsim lacks or gets wrong: ExportVm (missing),
// ExportSnapshot (a 200-byte text "disk", a lease that never times out) and
// OvfManager.CreateDescriptor (missing).
type exporter struct {
	Self types.ManagedObjectReference // vcsim locks by it
	x    *Exports
}

func (e *exporter) Reference() types.ManagedObjectReference { return e.Self }

// startExports sets up disks and export leases; Close calls stopExports.
func (s *Server) startExports(opts Options) error {
	d, err := newDisks(s)
	if err != nil {
		return err
	}
	s.Disks, s.Exports = d, newExports(s, opts.LeaseTimeout)
	s.hookExports()
	return nil
}

func (s *Server) stopExports() {
	s.Exports.close()
	s.Disks.close()
}

// hookExports routes those calls to the exporter, keeping any Registry.Handler
// another extension has set, and serves the leases' disks.
func (s *Server) hookExports() {
	e := &exporter{Self: exporterRef, x: s.Exports}
	reg := s.model.Map()
	prev := reg.Handler
	reg.Handler = func(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		switch m.Name {
		case "ExportVm", "ExportSnapshot", "CreateDescriptor":
			m.This = exporterRef // the request body keeps the real _this
			return e, nil
		}
		if prev != nil {
			return prev(ctx, m)
		}
		return nil, nil
	}
	s.mux.Handle(nfcPattern, s.Faults.Wrap(s.Exports))
}

// ExportVm exports a powered-off VM; vSphere refuses any other power state.
func (e *exporter) ExportVm(ctx *simulator.Context, req *types.ExportVm) soap.HasFault {
	body := &methods.ExportVmBody{}
	vm, ok := ctx.Map.Get(req.This).(*simulator.VirtualMachine)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.This})
		return body
	}
	var power types.VirtualMachinePowerState
	var disks []vmDisk
	ctx.WithLock(vm, func() {
		power = vm.Runtime.PowerState
		disks = vmDisks(vm.Self.Value, vm.Config.Hardware.Device)
	})
	if power != types.VirtualMachinePowerStatePoweredOff {
		body.Fault_ = simulator.Fault("The attempted operation cannot be performed in the current state ("+string(power)+").",
			&types.InvalidPowerState{RequestedState: types.VirtualMachinePowerStatePoweredOff, ExistingState: power})
		return body
	}
	l := e.x.newLease(ctx, vm.Self, disks)
	body.Res = &types.ExportVmResponse{Returnval: l.Self}
	return body
}

// ExportSnapshot exports the disks of a snapshot, whatever the VM's power state.
func (e *exporter) ExportSnapshot(ctx *simulator.Context, req *types.ExportSnapshot) soap.HasFault {
	body := &methods.ExportSnapshotBody{}
	snap, ok := ctx.Map.Get(req.This).(*simulator.VirtualMachineSnapshot)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.This})
		return body
	}
	var vm types.ManagedObjectReference
	var disks []vmDisk
	ctx.WithLock(snap, func() {
		vm = snap.Vm
		disks = vmDisks(vm.Value, snap.Config.Hardware.Device)
	})
	l := e.x.newLease(ctx, vm, disks)
	body.Res = &types.ExportSnapshotResponse{Returnval: l.Self}
	return body
}
