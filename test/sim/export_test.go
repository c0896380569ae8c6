package sim

import (
	"context"
	"crypto/sha1"
	"encoding/hex"

	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// startVM starts a simulator and finds a VM in it by name, powered off if
// asked.
func startVM(t *testing.T, name string, off bool) (*Server, *govmomi.Client, *object.VirtualMachine) {
	t.Helper()
	s := StartT(t, Options{})
	c, _, err := s.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, c, testVM(t, c, name, off)
}

// testVM finds a VM by name, powered off if asked.
func testVM(t *testing.T, c *govmomi.Client, name string, off bool) *object.VirtualMachine {
	t.Helper()
	vm, err := VM(context.Background(), c.Client, name, off)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func vmDiskKeys(t *testing.T, vm *object.VirtualMachine) []int32 {
	t.Helper()
	keys, err := DiskKeys(context.Background(), vm)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func isFault[T types.BaseMethodFault](err error) bool {
	return fault.Is(err, *new(T))
}

func leaseState(t *testing.T, l *nfc.Lease) mo.HttpNfcLease {
	t.Helper()
	o, err := l.Properties(context.Background(), "state", "error")
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// download GETs a lease URL into dir and returns the path and the SHA1.
func downloadItem(t *testing.T, c *govmomi.Client, item nfc.FileItem, dir string) (string, string) {
	t.Helper()
	res, err := c.Client.Client.Get(item.URL.String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", item.URL, res.Status)
	}
	p := filepath.Join(dir, item.Path)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(io.MultiWriter(f, h), res.Body); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

func TestExportVmPoweredOn(t *testing.T) {
	s, _, vm := startVM(t, "DC0_H0_VM0", false)
	ctx := context.Background()
	_, err := vm.Export(ctx)
	if !isFault[*types.InvalidPowerState](err) {
		t.Fatalf("ExportVm of a powered-on VM: %v", err)
	}
	if s.Exports.LeasesCreated() != 0 {
		t.Fatal("a lease was created")
	}
}

func TestExportVmLease(t *testing.T) {
	s, c, vm := startVM(t, "DC0_H0_VM0", true)
	ctx := context.Background()
	lease, err := vm.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := leaseState(t, lease).State; got != types.HttpNfcLeaseStateInitializing && got != types.HttpNfcLeaseStateReady {
		t.Fatalf("new lease is %s", got)
	}
	info, err := lease.Wait(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := vmDiskKeys(t, vm)
	if len(info.Items) != len(keys) || len(keys) == 0 {
		t.Fatalf("%d items for %d disks", len(info.Items), len(keys))
	}
	if info.LeaseTimeout != 300 || info.Entity != vm.Reference() {
		t.Fatalf("info: timeout %d entity %v", info.LeaseTimeout, info.Entity)
	}
	if s.Exports.ActiveLeases() != 1 {
		t.Fatalf("active leases %d", s.Exports.ActiveLeases())
	}
	dir := t.TempDir()
	sums := map[string]string{}
	for i, item := range info.Items {
		if item.Path != "disk-0.vmdk" || !strings.HasPrefix(item.DeviceId, "/"+vm.Reference().Value+"/") {
			t.Fatalf("item %+v", item.OvfFileItem)
		}
		p, sum := downloadItem(t, c, item, dir)
		sums[item.DeviceId] = sum
		if st, _ := os.Stat(p); st.Size() != item.Size {
			t.Fatalf("size %d, lease said %d", st.Size(), item.Size)
		}
		raw := filepath.Join(dir, "disk.raw")
		qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", p, raw)
		want, err := s.Disks.Raw(vm.Reference(), keys[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := CompareRawFile(raw, want); err != nil {
			t.Fatalf("disk %d: %v", keys[i], err)
		}
	}
	if err := lease.Progress(ctx, 100); err != nil {
		t.Fatal(err)
	}
	manifest, err := lease.GetManifest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest) != len(info.Items) {
		t.Fatalf("manifest has %d entries", len(manifest))
	}
	for _, m := range manifest {
		if m.Sha1 != sums[m.Key] || m.ChecksumType != "sha1" {
			t.Fatalf("manifest %s: sha1 %s, downloaded %s", m.Key, m.Sha1, sums[m.Key])
		}
	}
	if err := lease.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := leaseState(t, lease).State; got != types.HttpNfcLeaseStateDone {
		t.Fatalf("completed lease is %s", got)
	}
	if err := lease.Complete(ctx); !isFault[*types.InvalidState](err) {
		t.Fatalf("second Complete: %v", err)
	}
	if err := lease.Abort(ctx, nil); !isFault[*types.InvalidState](err) {
		t.Fatalf("Abort after Complete: %v", err)
	}
	res, err := c.Client.Client.Get(info.Items[0].URL.String())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after Complete: %s", res.Status)
	}
	if s.Exports.ActiveLeases() != 0 || s.Exports.LeasesCreated() != 1 {
		t.Fatalf("active %d created %d", s.Exports.ActiveLeases(), s.Exports.LeasesCreated())
	}
}

func TestExportLeaseAbort(t *testing.T) {
	s := StartT(t, Options{})
	ctx := context.Background()
	c, _, err := s.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := testVM(t, c, "DC0_H0_VM1", true).Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lease.Wait(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := lease.Abort(ctx, nil); err != nil {
		t.Fatal(err)
	}
	o := leaseState(t, lease)
	if o.State != types.HttpNfcLeaseStateError || o.Error == nil {
		t.Fatalf("aborted lease: %s %v", o.State, o.Error)
	}
	if _, ok := o.Error.Fault.(*types.RequestCanceled); !ok {
		t.Fatalf("aborted lease error %T", o.Error.Fault)
	}
	for name, err := range map[string]error{
		"Abort":       lease.Abort(ctx, nil),
		"Complete":    lease.Complete(ctx),
		"Progress":    lease.Progress(ctx, 50),
		"GetManifest": func() error { _, err := lease.GetManifest(ctx); return err }(),
	} {
		if !isFault[*types.InvalidState](err) || isFault[*types.Timedout](err) {
			t.Fatalf("%s after Abort: %v", name, err)
		}
	}
	if s.Exports.ActiveLeases() != 0 {
		t.Fatal("aborted lease still active")
	}
}

func TestExportLeaseTimeout(t *testing.T) {
	const timeout = time.Second
	s := StartT(t, Options{LeaseTimeout: timeout})
	ctx := context.Background()
	c, _, err := s.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vm := testVM(t, c, "DC0_H0_VM0", true)

	// Kept alive by progress, a lease outlives its timeout several times over.
	lease, err := vm.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lease.Wait(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		time.Sleep(timeout / 4)
		if err := lease.Progress(ctx, int32(i)); err != nil {
			t.Fatalf("progress %d: %v", i, err)
		}
	}
	if err := lease.Complete(ctx); err != nil {
		t.Fatalf("kept-alive lease: %v", err)
	}

	// Without progress it times out, cutting off a transfer under way.
	lease, err = vm.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := lease.Wait(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.LeaseTimeout != 1 {
		t.Fatalf("leaseTimeout %d", info.LeaseTimeout)
	}
	res, err := c.Client.Client.Get(info.Items[0].URL.String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.ReadFull(res.Body, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(timeout + timeout/2)
	if _, err := io.Copy(io.Discard, res.Body); err == nil {
		t.Fatal("transfer survived the lease's timeout")
	}
	o := leaseState(t, lease)
	if o.State != types.HttpNfcLeaseStateError || o.Error == nil {
		t.Fatalf("lease after timeout: %s", o.State)
	}
	if _, ok := o.Error.Fault.(*types.Timedout); !ok {
		t.Fatalf("error %T", o.Error.Fault)
	}
	for name, err := range map[string]error{
		"Progress": lease.Progress(ctx, 50),
		"Complete": lease.Complete(ctx),
		"Abort":    lease.Abort(ctx, nil),
	} {
		if !isFault[*types.Timedout](err) {
			t.Fatalf("%s after timeout: %v", name, err)
		}
	}
	if s.Exports.LeasesTimedOut() != 1 || s.Exports.ActiveLeases() != 0 {
		t.Fatalf("timed out %d, active %d", s.Exports.LeasesTimedOut(), s.Exports.ActiveLeases())
	}
}

func TestExportSnapshotPoweredOn(t *testing.T) {
	s, c, vm := startVM(t, "DC0_H0_VM0", false)
	ctx := context.Background()
	task, err := vm.CreateSnapshot(ctx, "b1", "", false, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := vm.FindSnapshot(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	lease, err := vm.ExportSnapshot(ctx, snap)
	if err != nil {
		t.Fatal(err)
	}
	info, err := lease.Wait(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, _ := downloadItem(t, c, info.Items[0], dir)
	raw := filepath.Join(dir, "disk.raw")
	qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", p, raw)
	want, _ := s.Disks.Raw(vm.Reference(), vmDiskKeys(t, vm)[0])
	if err := CompareRawFile(raw, want); err != nil {
		t.Fatal(err)
	}
	if err := lease.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	task, err = vm.RemoveSnapshot(ctx, "b1", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.FindSnapshot(ctx, "b1"); err == nil {
		t.Fatal("snapshot left")
	}
}

// TestExportCreatedVM: a VM made through the API has disk content too.
func TestExportCreatedVM(t *testing.T) {
	s := StartT(t, Options{})
	ctx := context.Background()
	c, _, err := s.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := testVM(t, c, "DC0_H0_VM1", false)
	folder, err := find.NewFinder(c.Client).DefaultFolder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	task, err := src.Clone(ctx, folder, "made-by-api", types.VirtualMachineCloneSpec{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := task.WaitForResult(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vm := object.NewVirtualMachine(c.Client, tr.Result.(types.ManagedObjectReference))
	if st, _ := vm.PowerState(ctx); st != types.VirtualMachinePowerStatePoweredOff {
		task, _ := vm.PowerOff(ctx)
		_ = task.Wait(ctx)
	}
	lease, err := vm.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := lease.Wait(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, _ := downloadItem(t, c, info.Items[0], dir)
	raw := filepath.Join(dir, "disk.raw")
	qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", p, raw)
	want, err := s.Disks.Raw(vm.Reference(), vmDiskKeys(t, vm)[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := CompareRawFile(raw, want); err != nil {
		t.Fatal(err)
	}
	if err := lease.Abort(ctx, nil); err != nil {
		t.Fatal(err)
	}
}
