package sim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CreateDescriptor writes an OVF descriptor of a VM's current configuration,
// in the shape vCenter gives it: References to the files the caller names in
// cdp.ovfFiles (matched by device key), a DiskSection, a NetworkSection and
// a VirtualHardwareSection that OvfManager.CreateImportSpec reads back.
func (e *exporter) CreateDescriptor(ctx *simulator.Context, req *types.CreateDescriptor) soap.HasFault {
	body := &methods.CreateDescriptorBody{}
	vm, ok := ctx.Map.Get(req.Obj).(*simulator.VirtualMachine)
	if !ok {
		body.Fault_ = simulator.Fault("only virtual machines are supported", &types.InvalidArgument{InvalidProperty: "obj"})
		return body
	}
	var desc string
	ctx.WithLock(vm, func() {
		name := req.Cdp.Name
		if name == "" {
			name = vm.Name
		}
		desc = ovfDescriptor(ctx, name, vm.Self.Value, vm.Config, req.Cdp.OvfFiles)
	})
	body.Res = &types.CreateDescriptorResponse{Returnval: types.OvfCreateDescriptorResult{OvfDescriptor: desc}}
	return body
}

func ovfDescriptor(ctx *simulator.Context, name, vmID string, cfg *types.VirtualMachineConfigInfo, files []types.OvfFile) string {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	esc := func(s string) string {
		var e strings.Builder
		_ = xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	devices := object.VirtualDeviceList(cfg.Hardware.Device)
	disks := vmDisks(vmID, cfg.Hardware.Device)

	p(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
`)
	fileRef := map[int32]string{} // disk key -> file id
	for i, d := range disks {
		for _, f := range files {
			if f.DeviceId == d.deviceKey {
				id := fmt.Sprintf("file%d", i+1)
				fileRef[d.key] = id
				size := ""
				if f.Size > 0 {
					size = fmt.Sprintf(` ovf:size="%d"`, f.Size)
				}
				p("    <File ovf:href=\"%s\" ovf:id=\"%s\"%s/>\n", esc(f.Path), id, size)
			}
		}
	}
	p("  </References>\n")

	if len(disks) > 0 {
		p("  <DiskSection>\n    <Info>Virtual disk information</Info>\n")
		for i, d := range disks {
			n, unit := capacityUnits(d.capacity)
			ref := ""
			if id, ok := fileRef[d.key]; ok {
				ref = fmt.Sprintf(` ovf:fileRef="%s"`, id)
			}
			p("    <Disk ovf:capacity=\"%d\" ovf:capacityAllocationUnits=\"%s\" ovf:diskId=\"vmdisk%d\"%s ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>\n",
				n, unit, i+1, ref)
		}
		p("  </DiskSection>\n")
	}

	nets := map[int32]string{} // NIC key -> network name
	var netNames []string
	for _, dev := range devices.SelectByType((*types.VirtualEthernetCard)(nil)) {
		n := networkName(ctx, dev)
		nets[dev.GetVirtualDevice().Key] = n
		if !slices.Contains(netNames, n) {
			netNames = append(netNames, n)
		}
	}
	if len(netNames) > 0 {
		p("  <NetworkSection>\n    <Info>The list of logical networks</Info>\n")
		for _, n := range netNames {
			p("    <Network ovf:name=\"%s\">\n      <Description>The %s network</Description>\n    </Network>\n", esc(n), esc(n))
		}
		p("  </NetworkSection>\n")
	}

	p("  <VirtualSystem ovf:id=\"%s\">\n    <Info>A virtual machine</Info>\n    <Name>%s</Name>\n", esc(name), esc(name))
	if cfg.Annotation != "" {
		p("    <AnnotationSection>\n      <Info>A human-readable annotation</Info>\n      <Annotation>%s</Annotation>\n    </AnnotationSection>\n", esc(cfg.Annotation))
	}
	p("    <OperatingSystemSection ovf:id=\"%d\" vmw:osType=\"%s\">\n      <Info>The kind of installed guest operating system</Info>\n    </OperatingSystemSection>\n",
		ovf.GuestIDToCIMOSType(cfg.GuestId), esc(cfg.GuestId))
	p(`    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>%s</vssd:VirtualSystemType>
      </System>
`, esc(name), esc(cfg.Version))

	id := 0
	// item writes an Item, its rasd elements in the schema's (alphabetical) order.
	item := func(fields ...string) int {
		id++
		kv := [][2]string{{"InstanceID", fmt.Sprint(id)}}
		for i := 0; i+1 < len(fields); i += 2 {
			if fields[i+1] != "" {
				kv = append(kv, [2]string{fields[i], fields[i+1]})
			}
		}
		slices.SortFunc(kv, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
		p("      <Item>\n")
		for _, f := range kv {
			p("        <rasd:%s>%s</rasd:%s>\n", f[0], esc(f[1]), f[0])
		}
		p("      </Item>\n")
		return id
	}
	itoa := func(n int64) string { return fmt.Sprint(n) }
	item("AllocationUnits", "hertz * 10^6", "Description", "Number of Virtual CPUs",
		"ElementName", fmt.Sprintf("%d virtual CPU(s)", cfg.Hardware.NumCPU), "ResourceType", "3", "VirtualQuantity", itoa(int64(cfg.Hardware.NumCPU)))
	item("AllocationUnits", "byte * 2^20", "Description", "Memory Size",
		"ElementName", fmt.Sprintf("%dMB of memory", cfg.Hardware.MemoryMB), "ResourceType", "4", "VirtualQuantity", itoa(int64(cfg.Hardware.MemoryMB)))

	parents := map[int32]int{} // controller key -> InstanceID
	for _, dev := range devices {
		vd := dev.GetVirtualDevice()
		switch c := dev.(type) {
		case *types.VirtualIDEController:
			parents[vd.Key] = item("Address", itoa(int64(c.BusNumber)), "Description", "IDE Controller",
				"ElementName", fmt.Sprintf("IDE %d", c.BusNumber), "ResourceType", "5")
		case types.BaseVirtualSCSIController:
			parents[vd.Key] = item("Address", itoa(int64(c.GetVirtualSCSIController().BusNumber)), "Description", "SCSI Controller",
				"ElementName", fmt.Sprintf("SCSI controller %d", c.GetVirtualSCSIController().BusNumber),
				"ResourceSubType", scsiSubType(dev), "ResourceType", "6")
		case types.BaseVirtualSATAController:
			parents[vd.Key] = item("Address", itoa(int64(c.GetVirtualSATAController().BusNumber)), "Description", "SATA Controller",
				"ElementName", fmt.Sprintf("SATA controller %d", c.GetVirtualSATAController().BusNumber),
				"ResourceSubType", "vmware.sata.ahci", "ResourceType", "20")
		}
	}
	unit := func(vd *types.VirtualDevice) string {
		if vd.UnitNumber == nil {
			return ""
		}
		return itoa(int64(*vd.UnitNumber))
	}
	ndisk, ncd, nnic := 0, 0, 0
	for _, dev := range devices {
		vd := dev.GetVirtualDevice()
		parent, ok := parents[vd.ControllerKey]
		switch dev.(type) {
		case *types.VirtualDisk:
			if !ok {
				continue
			}
			ndisk++
			item("AddressOnParent", unit(vd), "ElementName", fmt.Sprintf("Hard disk %d", ndisk),
				"HostResource", fmt.Sprintf("ovf:/disk/vmdisk%d", ndisk), "Parent", itoa(int64(parent)), "ResourceType", "17")
		case *types.VirtualCdrom:
			// Only on IDE: vcsim's CreateImportSpec panics on any other parent.
			if _, ide := devices.FindByKey(vd.ControllerKey).(*types.VirtualIDEController); !ok || !ide {
				continue
			}
			ncd++
			item("AddressOnParent", unit(vd), "AutomaticAllocation", "false", "ElementName", fmt.Sprintf("CD/DVD drive %d", ncd),
				"Parent", itoa(int64(parent)), "ResourceSubType", "vmware.cdrom.remotepassthrough", "ResourceType", "15")
		case types.BaseVirtualEthernetCard:
			nnic++
			kind := ethernetSubType(dev)
			item("AddressOnParent", unit(vd), "AutomaticAllocation", "true", "Connection", nets[vd.Key],
				"Description", fmt.Sprintf("%s ethernet adapter on %q", kind, nets[vd.Key]),
				"ElementName", fmt.Sprintf("Network adapter %d", nnic), "ResourceSubType", kind, "ResourceType", "10")
		case *types.VirtualMachineVideoCard:
			item("ElementName", "Video card", "ResourceType", "24")
		case *types.VirtualMachineVMCIDevice:
			item("ElementName", "VMCI device", "ResourceSubType", "vmware.vmci", "ResourceType", "1")
		}
	}
	p("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n")
	return b.String()
}

// capacityUnits expresses a capacity in the largest binary unit that divides it.
func capacityUnits(n int64) (int64, string) {
	for _, e := range []int{30, 20, 10} {
		if n > 0 && n%(1<<e) == 0 {
			return n >> e, fmt.Sprintf("byte * 2^%d", e)
		}
	}
	return n, "byte"
}

func scsiSubType(dev types.BaseVirtualDevice) string {
	switch dev.(type) {
	case *types.ParaVirtualSCSIController:
		return "VirtualSCSI"
	case *types.VirtualLsiLogicSASController:
		return "lsilogicsas"
	case *types.VirtualBusLogicController:
		return "buslogic"
	}
	return "lsilogic"
}

func ethernetSubType(dev types.BaseVirtualDevice) string {
	switch dev.(type) {
	case *types.VirtualE1000e:
		return "E1000e"
	case *types.VirtualVmxnet3:
		return "VmxNet3"
	case *types.VirtualVmxnet2:
		return "VmxNet2"
	case *types.VirtualPCNet32:
		return "PCNet32"
	}
	return "E1000"
}

// networkName is the name of the network a NIC is on.
func networkName(ctx *simulator.Context, dev types.BaseVirtualDevice) string {
	switch b := dev.GetVirtualDevice().Backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		return b.DeviceName
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		for _, obj := range ctx.Map.All("DistributedVirtualPortgroup") {
			if pg, ok := obj.(*simulator.DistributedVirtualPortgroup); ok && pg.Key == b.Port.PortgroupKey {
				return pg.Name
			}
		}
	}
	return "VM Network"
}
