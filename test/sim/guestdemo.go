package sim

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// GuestDemo lists the files every simulated guest starts with, a small
// Linux-like tree; each file's bytes are DemoBytes("guest"+Path, Size), with
// Text used instead when set.
var GuestDemo = []GuestDemoFile{
	{Path: "/etc/hostname", Text: "%s\n"}, // %s: the VM's name
	{Path: "/etc/os-release", Text: "NAME=\"vcsim Linux\"\nID=vcsim\n"},
	{Path: "/var/log/syslog", Size: 64 << 10},
	{Path: "/var/log/messages", Size: 3000},
	{Path: "/var/log/empty.log", Size: 0},
	{Path: "/home/user/notes.txt", Text: "guest files through vspherefs\n"},
	{Path: "/home/user/data/blob.bin", Size: 1<<20 + 7},
	{Path: "/root/.profile", Text: "PS1='# '\n", Mode: 0o600},
	{Path: "/usr/bin/tool", Size: 4096, Mode: 0o755},
}

// GuestDemoFile is one file of the demo guest tree.
type GuestDemoFile struct {
	Path string
	Size int64
	Text string
	Mode os.FileMode // 0: 0644
}

// guestDemoTime is the demo files' mtime: fixed, with a sub-second part so
// that tests see the precision kept.
var guestDemoTime = time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)

// populateGuest writes the demo tree into a new guest, plus empty /tmp
// (sticky, world-writable) and a symlink, as a Linux guest has.
func populateGuest(g *guestFS, vm string) error {
	for _, d := range []string{"/tmp", "/var/tmp", "/home/user", "/root"} {
		if f := g.mkdir(d, true); f != nil {
			return fmt.Errorf("mkdir %s: %T", d, f)
		}
	}
	for _, f := range GuestDemo {
		n, _ := g.name(f.Path)
		if err := g.root.MkdirAll(dirName(n), 0o755); err != nil {
			return err
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		fh, err := g.root.OpenFile(n, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
		if err != nil {
			return err
		}
		var r io.Reader = DemoBytes("guest"+f.Path, f.Size)
		if text := f.Text; text != "" {
			if strings.Contains(text, "%s") {
				text = fmt.Sprintf(text, vm)
			}
			r = strings.NewReader(text)
		}
		_, err = io.Copy(fh, r)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := g.root.Chtimes(n, guestDemoTime, guestDemoTime); err != nil {
			return err
		}
	}
	if err := g.root.Chmod("fs/tmp", 0o777|os.ModeSticky); err != nil {
		return err
	}
	return g.root.Symlink("../var/log/syslog", "fs/home/syslog")
}

// DemoOffVM is the powered-off VM the demo adds.
const DemoOffVM = "demo-off"

// createGuestDemo adds the demo's powered-off VM, next to vcsim's (powered
// on) default VMs, for tests and demos of InvalidPowerState.
func (s *Server) createGuestDemo(ctx context.Context) error {
	c, _, err := s.Client(ctx)
	if err != nil {
		return err
	}
	defer c.Logout(ctx)
	f := find.NewFinder(c.Client)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		return err
	}
	f.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	pools, err := f.ResourcePoolList(ctx, "*")
	if err != nil {
		return err
	}
	pool := pools[0]
	ds, err := f.DefaultDatastore(ctx)
	if err != nil {
		return err
	}
	spec := types.VirtualMachineConfigSpec{
		Name:    DemoOffVM,
		GuestId: string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest),
		Files:   &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", ds.Name())},
	}
	task, err := folders.VmFolder.CreateVM(ctx, spec, pool, nil)
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		return err
	}
	// One 1 GiB disk, so that exports/demo-off/ has a package to read.
	vm := object.NewVirtualMachine(c.Client, info.Result.(types.ManagedObjectReference))
	devs := object.VirtualDeviceList{}
	scsi, err := devs.CreateSCSIController("pvscsi")
	if err != nil {
		return err
	}
	if err := vm.AddDevice(ctx, scsi); err != nil {
		return err
	}
	if devs, err = vm.Device(ctx); err != nil {
		return err
	}
	ctrl, err := devs.FindDiskController("")
	if err != nil {
		return err
	}
	disk := devs.CreateDisk(ctrl, ds.Reference(), fmt.Sprintf("[%s] %s/%s.vmdk", ds.Name(), DemoOffVM, DemoOffVM))
	disk.CapacityInKB = 1 << 20
	return vm.AddDevice(ctx, disk)
}
