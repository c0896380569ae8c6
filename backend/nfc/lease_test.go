package nfc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/test/sim"
	"github.com/vspherefs/vspherefs/vmdk"
)

func simClient(t *testing.T, opts sim.Options) (*sim.Server, *govmomi.Client) {
	t.Helper()
	s := sim.StartT(t, opts)
	c, _, err := s.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func findVM(t *testing.T, c *govmomi.Client, name string, powerOff bool) *object.VirtualMachine {
	t.Helper()
	vm, err := sim.VM(context.Background(), c.Client, name, powerOff)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

var govcBuild struct {
	sync.Once
	path string
	err  error
}

// runGovc runs govc (built once from test/govc) against the simulator.
func runGovc(t *testing.T, s *sim.Server, args ...string) {
	t.Helper()
	govcBuild.Do(func() {
		dir, err := os.MkdirTemp("", "vspherefs-govc-")
		if err != nil {
			govcBuild.err = err
			return
		}
		govcBuild.path = filepath.Join(dir, "govc")
		if out, err := exec.Command("go", "build", "-o", govcBuild.path, "github.com/vspherefs/vspherefs/test/govc").CombinedOutput(); err != nil {
			govcBuild.err = errors.New(string(out))
		}
	})
	if govcBuild.err != nil {
		t.Fatal(govcBuild.err)
	}
	cmd := exec.Command(govcBuild.path, args...)
	cmd.Env = append(os.Environ(), "GOVC_URL="+s.URL.String(), "GOVC_INSECURE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("govc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// sameAsGovc checks that files are exactly what govc export.ovf -sha 256 wrote in dir.
func sameAsGovc(t *testing.T, files []remote.ExportedFile, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		t.Fatalf("govc wrote %d files, we %d", len(entries), len(files))
	}
	for _, f := range files {
		want, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatalf("govc wrote no %s: %v", f.Name, err)
		}
		got, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || int64(len(got)) != f.Size {
			t.Fatalf("%s differs from govc's (%d bytes, govc %d, said %d)", f.Name, len(got), len(want), f.Size)
		}
	}
}

func TestExportVM(t *testing.T) {
	s, c := simClient(t, sim.Options{})
	ctx := context.Background()
	vm := findVM(t, c, "DC0_H0_VM1", true)
	dir := t.TempDir()
	var last ExportProgress
	files, err := Export(ctx, c.Client, ExportRequest{VM: vm.Reference(), Dir: dir, Progress: func(p ExportProgress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if strings.Join(names, " ") != "DC0_H0_VM1.ovf DC0_H0_VM1-disk-0.vmdk DC0_H0_VM1.mf" {
		t.Fatalf("files %v", names)
	}
	if last.Total == 0 || last.Done != files[1].Size {
		t.Fatalf("last progress %+v", last)
	}
	if files[1].Disk == nil || files[1].Disk.Capacity != 10<<30 {
		t.Fatalf("disk %+v", files[1].Disk)
	}
	if s.Exports.ActiveLeases() != 0 || s.Exports.LeasesCreated() != 1 {
		t.Fatalf("leases active %d created %d", s.Exports.ActiveLeases(), s.Exports.LeasesCreated())
	}

	// The same package as govc's, byte for byte.
	govcDir := t.TempDir()
	runGovc(t, s, "export.ovf", "-vm", "DC0_H0_VM1", "-sha", "256", govcDir)
	sameAsGovc(t, files, filepath.Join(govcDir, "DC0_H0_VM1"))

	// The .mf checks out, read as govc's importer reads manifests.
	mf, err := os.Open(files[2].Path)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := library.ReadManifest(mf)
	mf.Close()
	if err != nil || len(sums) != 2 {
		t.Fatalf("manifest %v %v", sums, err)
	}

	// The spooled disk decodes to the simulator's raw image.
	img, f, err := vmdk.OpenDiskImage(files[1].Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := s.Disks.Raw(vm.Reference(), vmDisk(t, vm))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.CompareRaw(img, img.Size(), extents(img), want); err != nil {
		t.Fatal(err)
	}
}

func vmDisk(t *testing.T, vm *object.VirtualMachine) int32 {
	devs, err := vm.Device(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return devs.SelectByType((*types.VirtualDisk)(nil))[0].GetVirtualDevice().Key
}

func extents(img *vmdk.StreamImage) []sim.Extent {
	var e []sim.Extent
	for _, a := range img.Allocated() {
		e = append(e, sim.Extent{Off: a[0], Len: a[1] - a[0]})
	}
	return e
}

func TestExportPoweredOn(t *testing.T) {
	s, c := simClient(t, sim.Options{})
	vm := findVM(t, c, "DC0_H0_VM0", false)
	dir := t.TempDir()
	_, err := Export(context.Background(), c.Client, ExportRequest{VM: vm.Reference(), Dir: dir})
	if !errors.Is(err, remote.ErrBusy) || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("export of a powered-on VM: %v", err)
	}
	if s.Exports.ActiveLeases() != 0 {
		t.Fatal("lease left")
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("spool not empty: %v", left)
	}
}

// TestExportSnapshot backs up a running VM: snapshot, export, remove.
func TestExportSnapshot(t *testing.T) {
	s, c := simClient(t, sim.Options{})
	ctx := context.Background()
	vm := findVM(t, c, "DC0_H0_VM0", false)
	ref := vm.Reference()
	if err := CreateSnapshot(ctx, c.Client, ref, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := CreateSnapshot(ctx, c.Client, ref, "b1"); !errors.Is(err, remote.ErrExists) {
		t.Fatalf("second snapshot b1: %v", err)
	}
	list, err := Snapshots(ctx, c.Client, ref)
	if err != nil || len(list) != 1 || list[0].Name != "b1" {
		t.Fatalf("snapshots %+v %v", list, err)
	}
	dir := t.TempDir()
	files, err := Export(ctx, c.Client, ExportRequest{VM: ref, Snapshot: "b1", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	govcDir := t.TempDir()
	runGovc(t, s, "export.ovf", "-vm", "DC0_H0_VM0", "-snapshot", "b1", "-sha", "256", govcDir)
	sameAsGovc(t, files, filepath.Join(govcDir, "DC0_H0_VM0"))

	if _, err := Export(ctx, c.Client, ExportRequest{VM: ref, Snapshot: "nope", Dir: t.TempDir()}); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("export of a missing snapshot: %v", err)
	}
	if err := RemoveSnapshot(ctx, c.Client, ref, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveSnapshot(ctx, c.Client, ref, "b1"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if list, _ := Snapshots(ctx, c.Client, ref); len(list) != 0 {
		t.Fatalf("snapshots left: %+v", list)
	}
	if s.Exports.ActiveLeases() != 0 {
		t.Fatal("lease left")
	}
}

// TestExportOutlastsLeaseTimeout: a transfer much longer than the lease
// timeout completes, because the exporter renews the lease.
func TestExportOutlastsLeaseTimeout(t *testing.T) {
	s, c := simClient(t, sim.Options{LeaseTimeout: time.Second})
	vm := findVM(t, c, "DC0_H0_VM1", true)
	s.Exports.Throttle(2 << 20) // ~8 MiB disk: about 4 lease timeouts
	start := time.Now()
	var reports []ExportProgress
	files, err := Export(context.Background(), c.Client, ExportRequest{VM: vm.Reference(), Dir: t.TempDir(),
		Progress: func(p ExportProgress) { reports = append(reports, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 3*time.Second {
		t.Fatalf("export took only %v: the throttle did not hold", time.Since(start))
	}
	if s.Exports.LeasesTimedOut() != 0 || s.Exports.ActiveLeases() != 0 {
		t.Fatalf("timed out %d active %d", s.Exports.LeasesTimedOut(), s.Exports.ActiveLeases())
	}
	if len(reports) < 3 || reports[len(reports)-1].Done != files[1].Size {
		t.Fatalf("progress reports %+v", reports)
	}
}

// TestExportCancel: a cancelled export aborts its lease and leaves no files.
func TestExportCancel(t *testing.T) {
	s, c := simClient(t, sim.Options{})
	vm := findVM(t, c, "DC0_H0_VM1", true)
	s.Exports.Throttle(1 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	dir := t.TempDir()
	_, err := Export(ctx, c.Client, ExportRequest{VM: vm.Reference(), Dir: dir})
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled export: %v", err)
	}
	if s.Exports.LeasesCreated() != 1 || s.Exports.ActiveLeases() != 0 {
		t.Fatalf("created %d active %d", s.Exports.LeasesCreated(), s.Exports.ActiveLeases())
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("spool not empty: %v", left)
	}
}

// TestExportManifestMismatch: a disk damaged in transit is caught by the
// lease's manifest, whichever checksum it gives, and the lease is aborted.
func TestExportManifestMismatch(t *testing.T) {
	s, c := simClient(t, sim.Options{})
	vm := findVM(t, c, "DC0_H0_VM1", true)
	s.Exports.Corrupt(true)
	for mode, kind := range map[sim.ManifestChecksums]string{sim.ChecksumsAsked: "SHA256", sim.ChecksumsUnknown: "SHA1", sim.ChecksumsIgnored: "SHA1"} {
		s.Exports.SetManifestChecksums(mode)
		dir := t.TempDir()
		_, err := Export(context.Background(), c.Client, ExportRequest{VM: vm.Reference(), Dir: dir})
		if !errors.Is(err, remote.ErrIO) || !strings.Contains(err.Error(), "with "+kind+" ") {
			t.Fatalf("damaged export, manifest by %s: %v", kind, err)
		}
		if s.Exports.ActiveLeases() != 0 {
			t.Fatal("lease left")
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("spool not empty: %v", left)
		}
	}
}

// TestExportLeaseLost: if a renewal fails, the transfer stops at once and
// the export fails cleanly (it does not run on to a lease that is gone).
func TestExportLeaseLost(t *testing.T) {
	s, c := simClient(t, sim.Options{LeaseTimeout: time.Second})
	vm := findVM(t, c, "DC0_H0_VM1", true)
	s.Exports.Throttle(1 << 20)
	s.Model().Service.AddFaultRule(&simulator.FaultInjectionRule{
		MethodName: "HttpNfcLeaseProgress", ObjectType: "*", ObjectName: "*",
		Probability: 1, Enabled: true, Fault: &types.SystemError{Reason: "injected"},
	})
	_, err := Export(context.Background(), c.Client, ExportRequest{VM: vm.Reference(), Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "HttpNfcLeaseProgress") {
		t.Fatalf("export with a lost lease: %v", err)
	}
	if s.Exports.ActiveLeases() != 0 {
		t.Fatal("lease left")
	}
}

// TestExportDiskReady: each disk is told of once spooled and checked against
// its own manifest entry, before the lease is completed, with the bytes and
// size that the export then returns.
func TestExportDiskReady(t *testing.T) {
	s, c := simClient(t, sim.Options{})
	vm := findVM(t, c, "DC0_H0_VM1", true)
	var ready []remote.ExportedFile
	var active []int
	files, err := Export(context.Background(), c.Client, ExportRequest{VM: vm.Reference(), Dir: t.TempDir(),
		DiskReady: func(i int, f remote.ExportedFile) {
			if i != len(ready) {
				t.Errorf("disk %d told of after %d", i, len(ready))
			}
			ready = append(ready, f)
			active = append(active, s.Exports.ActiveLeases())
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ready) != 1 || active[0] != 1 {
		t.Fatalf("disks told of %d, active leases then %v", len(ready), active)
	}
	if f := files[1]; f.Path != ready[0].Path || f.Size != ready[0].Size || f.Ready.IsZero() || !f.Ready.Equal(ready[0].Ready) {
		t.Errorf("told %+v, returned %+v", ready[0], f)
	}
	if !files[0].Ready.After(ready[0].Ready) {
		t.Errorf(".ovf ready at %v, before the disk (%v)", files[0].Ready, ready[0].Ready)
	}
}
