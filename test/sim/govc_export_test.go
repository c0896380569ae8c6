package sim

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vim25/types"
)

func govc(t *testing.T, s *Server, args ...string) string {
	t.Helper()
	cmd := exec.Command(govcBin(t), args...)
	cmd.Env = append(os.Environ(), "GOVC_URL="+s.URL.String(), "GOVC_INSECURE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("govc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestGovcExportImport: govc export.ovf works unchanged against the
// simulator, and govc import.ovf accepts (and checksums) what it wrote.
func TestGovcExportImport(t *testing.T) {
	s, c, vm := startVM(t, "DC0_H0_VM1", true)
	ctx := context.Background()
	dir := t.TempDir()
	govc(t, s, "export.ovf", "-vm", "DC0_H0_VM1", "-sha", "1", dir)
	pkg := filepath.Join(dir, "DC0_H0_VM1")
	names, _ := filepath.Glob(filepath.Join(pkg, "*"))
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	if strings.Join(names, " ") != "DC0_H0_VM1-disk-0.vmdk DC0_H0_VM1.mf DC0_H0_VM1.ovf" {
		t.Fatalf("export wrote %v", names)
	}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", filepath.Join(pkg, "DC0_H0_VM1-disk-0.vmdk"), raw)
	want, _ := s.Disks.Raw(vm.Reference(), vmDiskKeys(t, vm)[0])
	if err := CompareRawFile(raw, want); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(pkg, "DC0_H0_VM1.ovf"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := ovf.Unmarshal(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(env.References) != 1 || env.References[0].Href != "DC0_H0_VM1-disk-0.vmdk" || len(env.Disk.Disks) != 1 {
		t.Fatalf("ovf references %+v disks %+v", env.References, env.Disk)
	}
	if n := ovf.ParseCapacityAllocationUnits(*env.Disk.Disks[0].CapacityAllocationUnits); n != 1<<30 || env.Disk.Disks[0].Capacity != "10" {
		t.Fatalf("disk capacity %s * %d", env.Disk.Disks[0].Capacity, n)
	}

	govc(t, s, "import.ovf", "-m", "-name", "restored", "-pool", "DC0_C0/Resources", filepath.Join(pkg, "DC0_H0_VM1.ovf"))
	restored := testVM(t, c, "restored", false)
	devs, err := restored.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	disks := devs.SelectByType((*types.VirtualDisk)(nil))
	if len(disks) != 1 || disks[0].(*types.VirtualDisk).CapacityInKB != 10<<20 {
		t.Fatalf("restored VM disks %v", disks)
	}
	if s.Exports.ActiveLeases() != 0 || s.Exports.LeasesCreated() != 1 {
		t.Fatalf("leases: active %d created %d", s.Exports.ActiveLeases(), s.Exports.LeasesCreated())
	}
}

// TestGovcExportSnapshot: a running VM is exported through a snapshot.
func TestGovcExportSnapshot(t *testing.T) {
	s := StartT(t, Options{})
	dir := t.TempDir()
	govc(t, s, "snapshot.create", "-vm", "DC0_H0_VM0", "-m=false", "b1")
	govc(t, s, "export.ovf", "-vm", "DC0_H0_VM0", "-snapshot", "b1", "-sha", "256", dir)
	mf, err := os.ReadFile(filepath.Join(dir, "DC0_H0_VM0", "DC0_H0_VM0.mf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(mf), "SHA256(DC0_H0_VM0-disk-0.vmdk)= ") {
		t.Fatalf("mf:\n%s", mf)
	}
	govc(t, s, "snapshot.remove", "-vm", "DC0_H0_VM0", "b1")
	if s.Exports.ActiveLeases() != 0 {
		t.Fatal("lease left")
	}
}
