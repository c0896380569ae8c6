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

	Hidden, ReadOnly bool // Windows attributes
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
		if err := writeDemoFile(g, n, f, vm); err != nil {
			return err
		}
	}
	if err := g.root.Chmod("fs/tmp", 0o777|os.ModeSticky); err != nil {
		return err
	}
	return g.root.Symlink("../var/log/syslog", "fs/home/syslog")
}

// WindowsDemo lists the files a Windows guest starts with, on drives C:
// and D:; bytes as GuestDemo's, from DemoBytes("guest"+Path, Size).
var WindowsDemo = []GuestDemoFile{
	{Path: `C:\Windows\System32\drivers\etc\hosts`, Text: "127.0.0.1 localhost\r\n"},
	{Path: `C:\Windows\win.ini`, Text: "; for 16-bit app support\r\n", ReadOnly: true},
	{Path: `C:\Users\Administrator\Desktop\notes.txt`, Text: "%s: guest files through vspherefs\r\n"},
	{Path: `C:\Users\Administrator\Documents\report.bin`, Size: 300<<10 + 3},
	{Path: `C:\Users\Administrator\NTUSER.DAT`, Size: 8192, Hidden: true},
	{Path: `C:\pagefile.sys`, Size: 4096, Hidden: true},
	{Path: `D:\data\archive.bin`, Size: 1<<20 + 11},
}

// populateWindowsGuest writes WindowsDemo into a new Windows guest, with
// empty C:\Temp and C:\Windows\Temp.
func populateWindowsGuest(g *guestFS, vm string) error {
	for _, d := range []string{"fs/C", "fs/D", "fs/C/Temp", "fs/C/Windows/Temp", "fs/C/ProgramData"} {
		if err := g.root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	g.hidden["fs/C/ProgramData"] = true
	for _, f := range WindowsDemo {
		n, _ := g.name(f.Path)
		if err := writeDemoFile(g, n, f, vm); err != nil {
			return err
		}
		if f.ReadOnly {
			if err := g.root.Chmod(n, 0o444); err != nil {
				return err
			}
		}
		g.hidden[n] = f.Hidden
	}
	return nil
}

// writeDemoFile writes one demo file at name n under the guest's root.
func writeDemoFile(g *guestFS, n string, f GuestDemoFile, vm string) error {
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
	return g.root.Chtimes(n, guestDemoTime, guestDemoTime)
}

// DemoOffVM is the powered-off VM the demo adds.
const DemoOffVM = "demo-off"

// DemoWindowsVM is the powered-on Windows VM the demo adds.
const DemoWindowsVM = "demo-win"

// createGuestDemo adds the demo's powered-off VM, next to vcsim's (powered
// on) default VMs, for tests and demos of InvalidPowerState, and a
// powered-on Windows VM.
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
	for _, vm := range []struct {
		name, guestID string
		on            bool
	}{
		{DemoOffVM, string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest), false},
		{DemoWindowsVM, string(types.VirtualMachineGuestOsIdentifierWindows2019srv_64Guest), true},
	} {
		spec := types.VirtualMachineConfigSpec{
			Name:    vm.name,
			GuestId: vm.guestID,
			Files:   &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", ds.Name())},
		}
		task, err := folders.VmFolder.CreateVM(ctx, spec, pool, nil)
		if err != nil {
			return err
		}
		res, err := task.WaitForResult(ctx)
		if err != nil {
			return err
		}
		obj := object.NewVirtualMachine(c.Client, res.Result.(types.ManagedObjectReference))
		if err := addDemoDisk(ctx, obj, ds, vm.name); err != nil {
			return err
		}
		if !vm.on {
			continue
		}
		task, err = obj.PowerOn(ctx)
		if err != nil {
			return err
		}
		if err := task.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// addDemoDisk gives a demo VM one 1 GiB disk, so that its export holds a package.
func addDemoDisk(ctx context.Context, vm *object.VirtualMachine, ds *object.Datastore, name string) error {
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
	disk := devs.CreateDisk(ctrl, ds.Reference(), fmt.Sprintf("[%s] %s/%s.vmdk", ds.Name(), name, name))
	disk.CapacityInKB = 1 << 20
	return vm.AddDevice(ctx, disk)
}
