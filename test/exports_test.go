package test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/test/sim"
)

// exportVM is the VM the export tests power off and export; runningVM stays on.
const (
	exportVM  = "DC0_H0_VM1"
	runningVM = "DC0_H0_VM0"
)

// simVM finds a VM of the simulator by name, powering it off if asked.
func simVM(t testing.TB, s *sim.Server, name string, off bool) *object.VirtualMachine {
	t.Helper()
	c, _, err := s.Client(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	vm, err := sim.VM(ctx(t), c.Client, name, off)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// diskKeys are the device keys of a VM's disks, in device order.
func diskKeys(t testing.TB, vm *object.VirtualMachine) []int32 {
	t.Helper()
	keys, err := sim.DiskKeys(ctx(t), vm)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// addSmallDisk gives a VM a second, small disk, so that packages hold two.
func addSmallDisk(t testing.TB, vm *object.VirtualMachine, name string, capacity int64) {
	t.Helper()
	devs, err := vm.Device(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := devs.FindDiskController("")
	if err != nil {
		t.Fatal(err)
	}
	first := devs.SelectByType((*types.VirtualDisk)(nil))[0].(*types.VirtualDisk)
	ds := first.Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo().Datastore
	var dso mo.Datastore
	if err := vm.Properties(ctx(t), *ds, []string{"name"}, &dso); err != nil {
		t.Fatal(err)
	}
	disk := devs.CreateDisk(ctrl, *ds, "["+dso.Name+"] "+vm.Name()+"/"+name+".vmdk")
	disk.CapacityInKB = capacity / 1024
	disk.CapacityInBytes = capacity
	if err := vm.AddDevice(ctx(t), disk); err != nil {
		t.Fatal(err)
	}
}

// govcPackage is the package `govc export.ovf -sha 256` writes of exportVM.
func govcPackage(t *testing.T, s *sim.Server) map[string][]byte {
	t.Helper()
	ref := t.TempDir()
	govcRun(t, s, "export.ovf", "-vm", exportVM, "-sha", "256", ref)
	return packageFiles(t, filepath.Join(ref, exportVM))
}

func govcRun(t testing.TB, s *sim.Server, args ...string) string {
	t.Helper()
	cmd := exec.Command(govc, args...)
	cmd.Env = append(os.Environ(), "GOVC_URL="+s.URL.String(), "GOVC_INSECURE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("govc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// packageFiles reads every file of a package directory, by name.
func packageFiles(t *testing.T, dir string) map[string][]byte { return packageFilesTB(t, dir) }

func packageFilesTB(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// samePackage fails unless dir holds exactly govc's files, byte for byte;
// what names the copy in messages.
func samePackage(t *testing.T, what, dir string, want map[string][]byte) {
	t.Helper()
	got := packageFiles(t, dir)
	if names(got) != names(want) {
		t.Fatalf("%s: files %s, govc wrote %s", what, names(got), names(want))
	}
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s: %s differs from govc's (%d bytes, govc %d)", what, name, len(got[name]), len(b))
		}
	}
}

func names(files map[string][]byte) string {
	var n []string
	for k := range files {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, " ")
}

var mfLine = regexp.MustCompile(`^SHA256\((.+)\)= ([0-9a-f]{64})$`)

// checkManifest does what `sha256sum -c` does with an ovftool manifest:
// every line's file hashes to the line's sum, and every other file is listed.
func checkManifest(t *testing.T, dir, mf string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, mf))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{mf: true}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := mfLine.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("%s: bad line %q", mf, sc.Text())
		}
		b, err := os.ReadFile(filepath.Join(dir, m[1]))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != m[2] {
			t.Errorf("%s: %s: FAILED", mf, m[1])
		}
		listed[m[1]] = true
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !listed[e.Name()] {
			t.Errorf("%s: %s not listed", mf, e.Name())
		}
	}
}

// TestExportsPackage: exports/<vm>/ of a powered-off VM is the package govc
// export.ovf writes; cp -r, tar and rsync of it give packages govc
// import.ovf accepts, with the same bytes; disks/<vm>/ holds the raw disks;
// both trees come from one lease, none held once the export is spooled.
func TestExportsPackage(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	vm := simVM(t, s, exportVM, true)
	addSmallDisk(t, vm, "small", 40<<20)
	keys := diskKeys(t, vm)
	if len(keys) != 2 {
		t.Fatalf("disks %v", keys)
	}
	m := mount(t, s)

	// Listing needs no export: names come from the configuration.
	top, err := os.ReadDir(m.Path("exports"))
	if err != nil {
		t.Fatal(err)
	}
	var tops []string
	for _, e := range top {
		tops = append(tops, e.Name())
	}
	if got := strings.Join(tops, " "); !strings.Contains(got, exportVM) || !strings.Contains(got, runningVM) {
		t.Fatalf("exports/: %s", got)
	}
	run(t, "ls", "-l", m.Path("exports"), m.Path("disks"))
	pkg := m.Path("exports", exportVM)
	listed := run(t, "ls", pkg)
	want := exportVM + "-disk-0.vmdk\n" + exportVM + "-disk-1.vmdk\n" + exportVM + ".mf\n" + exportVM + ".ovf\n"
	if listed != want {
		t.Fatalf("ls %s:\n%s", pkg, listed)
	}
	if n := s.Exports.LeasesCreated(); n != 0 {
		t.Fatalf("ls started %d exports", n)
	}

	// ls -l starts the export, and shows exact sizes.
	out := run(t, "ls", "-l", pkg)
	if s.Exports.LeasesCreated() != 1 || s.Exports.ActiveLeases() != 0 {
		t.Fatalf("after ls -l: %d leases, %d active", s.Exports.LeasesCreated(), s.Exports.ActiveLeases())
	}
	t.Logf("ls -l:\n%s", out)

	want0 := govcPackage(t, s)

	dst := t.TempDir()
	run(t, "cp", "-r", pkg, filepath.Join(dst, "cp"))
	run(t, "sh", "-c", "tar -C "+m.Path("exports")+" -cf - "+exportVM+" | (mkdir "+dst+"/tar && tar -C "+dst+"/tar -xf -)")
	run(t, "rsync", "-a", pkg+"/", filepath.Join(dst, "rsync")+"/")
	for i, copy := range []string{"cp", "tar/" + exportVM, "rsync"} {
		dir := filepath.Join(dst, copy)
		samePackage(t, copy, dir, want0)
		checkManifest(t, dir, exportVM+".mf")
		restored := "restored-" + strings.ReplaceAll(copy, "/", "-")
		govcRun(t, s, "import.ovf", "-name", restored, "-pool", "DC0_C0/Resources", filepath.Join(dir, exportVM+".ovf"))
		if n := len(diskKeys(t, simVM(t, s, restored, false))); n != 2 {
			t.Errorf("import %d: %d disks", i, n)
		}
	}

	// disks/: raw images of exactly the capacity, equal to the backing
	// images and to what qemu-img makes of the vmdk, from the same spool.
	for i, key := range keys {
		raw, err := s.Disks.Raw(vm.Reference(), key)
		if err != nil {
			t.Fatal(err)
		}
		img := m.Path("disks", exportVM, "disk-"+string(rune('0'+i))+".img")
		st, err := os.Stat(img)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != raw.Size() {
			t.Errorf("%s: size %d, capacity %d", img, st.Size(), raw.Size())
		}
		if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used >= st.Size() || used == 0 {
			t.Errorf("%s: %d bytes used of %d: holes not shown", img, used, st.Size())
		}
		if err := sim.CompareRawFile(img, raw); err != nil {
			t.Errorf("%s: %v", img, err)
		}
		conv := filepath.Join(t.TempDir(), "conv.raw")
		run(t, "qemu-img", "convert", "-f", "vmdk", "-O", "raw", filepath.Join(dst, "cp", exportVM+"-disk-"+string(rune('0'+i))+".vmdk"), conv)
		if err := sim.CompareRawFile(conv, raw); err != nil {
			t.Errorf("qemu-img convert of disk %d: %v", i, err)
		}
	}
	// A full sequential read of the small disk through the mount.
	small, _ := s.Disks.Raw(vm.Reference(), keys[1])
	b, err := os.ReadFile(m.Path("disks", exportVM, "disk-1.img"))
	if err != nil {
		t.Fatal(err)
	}
	wantSmall, _ := io.ReadAll(small.Reader())
	if !bytes.Equal(b, wantSmall) {
		t.Errorf("disk-1.img read whole differs")
	}
	// The mount exported once (govc once); no lease is held by readers.
	if s.Exports.LeasesCreated() != 2 || s.Exports.ActiveLeases() != 0 {
		t.Errorf("leases: %d created, %d active", s.Exports.LeasesCreated(), s.Exports.ActiveLeases())
	}
	if !m.WaitLog("export progress", "export complete") {
		t.Errorf("log shows no progress:\n%s", m.Log())
	}

	// Read-only: nothing but snapshot folders can be made or removed.
	for _, err := range []error{
		os.WriteFile(filepath.Join(pkg, "new.txt"), nil, 0o644),
		os.Remove(filepath.Join(pkg, exportVM+".ovf")),
		os.Mkdir(m.Path("exports", "plain"), 0o755),
		syscall.Rmdir(pkg),
		os.Mkdir(m.Path("disks", exportVM+"@x"), 0o755),
	} {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("change: %v, want EROFS", err)
		}
	}
	if _, err := os.OpenFile(filepath.Join(pkg, exportVM+".ovf"), os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("open for writing: %v", err)
	}

	spools, _ := filepath.Glob(filepath.Join(m.CacheDir, "*", "exports", "*"))
	if len(spools) != 1 {
		t.Errorf("spools under --cache-dir: %v", spools)
	}

	// A VM that changes is exported again, into a new spool.
	task, err := vm.Reconfigure(ctx(t), types.VirtualMachineConfigSpec{MemoryMB: 2048})
	if err == nil {
		err = task.Wait(ctx(t))
	}
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond) // the mount's TTL
	if _, err := os.Stat(filepath.Join(pkg, exportVM+".ovf")); err != nil {
		t.Fatal(err)
	}
	if n := s.Exports.LeasesCreated(); n != 3 {
		t.Errorf("%d leases after the VM changed, want 3", n)
	}
	if spools2, _ := filepath.Glob(filepath.Join(m.CacheDir, "*", "exports", "*")); len(spools2) != 1 || spools2[0] == spools[0] {
		t.Errorf("spools after the VM changed: %v (before: %v)", spools2, spools)
	}
	m.Unmount(t)
	if left, _ := filepath.Glob(filepath.Join(m.CacheDir, "*", "exports")); len(left) != 0 {
		t.Errorf("spool left after unmount: %v", left)
	}
}

// TestExportsRunningVM: a powered-on VM's export folders list nothing, its
// files answer EBUSY, with advice in the log; a snapshot made with mkdir exports it, and rmdir
// removes the snapshot: a backup of a running VM through the mount alone.
func TestExportsRunningVM(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	vm := simVM(t, s, runningVM, false)
	m := mount(t, s)
	for _, p := range []string{m.Path("exports", runningVM), m.Path("disks", runningVM)} {
		// Listed empty, so that find and du of the mount succeed; named files are EBUSY.
		if ents, err := os.ReadDir(p); err != nil || len(ents) != 0 {
			t.Errorf("readdir %s: %d entries, %v; want none", p, len(ents), err)
		}
	}
	if _, err := os.Stat(m.Path("exports", runningVM, runningVM+".ovf")); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("stat: %v, want EBUSY", err)
	}
	if !m.WaitLog("power it off, or export a snapshot") {
		t.Errorf("no advice in the log:\n%s", m.Log())
	}

	snapDir := m.Path("exports", runningVM+"@b1")
	if err := os.Mkdir(snapDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(snapDir, 0o755); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("mkdir again: %v", err)
	}
	if err := os.Mkdir(m.Path("exports", "no-such-vm@b1"), 0o755); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("mkdir for no VM: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "backup")
	run(t, "cp", "-r", snapDir, dst)
	got := packageFiles(t, dst)
	if names(got) != runningVM+"-disk-0.vmdk "+runningVM+".mf "+runningVM+".ovf" {
		t.Fatalf("backup: %s", names(got))
	}
	checkManifest(t, dst, runningVM+".mf")
	raw, _ := s.Disks.Raw(vm.Reference(), diskKeys(t, vm)[0])
	conv := filepath.Join(t.TempDir(), "conv.raw")
	run(t, "qemu-img", "convert", "-f", "vmdk", "-O", "raw", filepath.Join(dst, runningVM+"-disk-0.vmdk"), conv)
	if err := sim.CompareRawFile(conv, raw); err != nil {
		t.Errorf("backup disk: %v", err)
	}
	if err := sim.CompareRawFile(m.Path("disks", runningVM+"@b1", "disk-0.img"), raw); err != nil {
		t.Errorf("disks/%s@b1: %v", runningVM, err)
	}
	if n := s.Exports.LeasesCreated(); n != 1 {
		t.Errorf("%d leases for exports/ and disks/ of one snapshot", n)
	}
	if err := syscall.Rmdir(snapDir); err != nil {
		t.Fatal(err)
	}
	var o mo.VirtualMachine
	if err := vm.Properties(ctx(t), vm.Reference(), []string{"snapshot"}, &o); err != nil {
		t.Fatal(err)
	}
	if o.Snapshot != nil && len(o.Snapshot.RootSnapshotList) != 0 {
		t.Errorf("snapshot left: %+v", o.Snapshot.RootSnapshotList)
	}
	if _, err := os.Stat(snapDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after rmdir: %v", err)
	}
	if s.Exports.ActiveLeases() != 0 {
		t.Errorf("lease left")
	}
}

// TestExportsKeepAlive: an export that takes several lease timeouts is kept
// alive by progress reports, and a reader that sleeps longer than the lease
// timeout between reads still completes (reads come from the spool).
func TestExportsKeepAlive(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	s := sim.StartT(t, sim.Options{Demo: true, LeaseTimeout: timeout})
	vm := simVM(t, s, exportVM, true)
	m := mount(t, s)
	s.Exports.Throttle(2 << 20) // the disk takes about 4 s: two lease timeouts
	vmdk := m.Path("exports", exportVM, exportVM+"-disk-0.vmdk")
	start := time.Now()
	// Stats of every file of both trees at once: one export serves them all.
	var wg sync.WaitGroup
	for _, p := range []string{
		m.Path("exports", exportVM, exportVM+".ovf"),
		m.Path("exports", exportVM, exportVM+".mf"),
		m.Path("disks", exportVM, "disk-0.img"),
	} {
		wg.Go(func() {
			if _, err := os.Stat(p); err != nil {
				t.Error(err)
			}
		})
	}
	st, err := os.Stat(vmdk)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	wg.Wait()
	if n := s.Exports.LeasesCreated(); n != 1 {
		t.Errorf("%d leases for concurrent stats", n)
	}
	t.Logf("export of %d bytes took %v", st.Size(), took)
	if took < 2*timeout {
		t.Errorf("export took %v: not longer than the lease timeout, nothing shown", took)
	}
	if n := s.Exports.LeasesTimedOut(); n != 0 {
		t.Errorf("%d leases timed out", n)
	}
	s.Exports.Throttle(0)

	f, err := os.Open(m.Path("disks", exportVM, "disk-0.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, _ := s.Disks.Raw(vm.Reference(), diskKeys(t, vm)[0])
	for i, e := range raw.Extents()[:3] {
		if i > 0 {
			time.Sleep(timeout + 500*time.Millisecond)
			if s.Exports.ActiveLeases() != 0 {
				t.Errorf("a lease is held by an idle reader")
			}
		}
		got := make([]byte, min(e.Len, 1<<20))
		want := make([]byte, len(got))
		if _, err := f.ReadAt(got, e.Off); err != nil {
			t.Fatal(err)
		}
		_, _ = raw.ReadAt(want, e.Off)
		if !bytes.Equal(got, want) {
			t.Errorf("read at %d differs", e.Off)
		}
	}
	if s.Exports.LeasesCreated() != 1 {
		t.Errorf("%d leases", s.Exports.LeasesCreated())
	}
}

// TestExportsAbortOnUnmount: unmounting during an export aborts its lease
// (none is left active), and the waiting stat returns.
func TestExportsAbortOnUnmount(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	simVM(t, s, exportVM, true)
	m := mount(t, s)
	s.Exports.Throttle(256 << 10)
	statErr := make(chan error, 1)
	go func() {
		_, err := os.Stat(m.Path("exports", exportVM, exportVM+".ovf"))
		statErr <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for s.Exports.BytesServed() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("export did not start\n%s", m.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.Exports.ActiveLeases() != 1 {
		t.Fatalf("%d active leases mid-export", s.Exports.ActiveLeases())
	}
	m.Unmount(t)
	if err := <-statErr; err == nil {
		t.Errorf("stat of an aborted export succeeded")
	}
	if n := s.Exports.ActiveLeases(); n != 0 {
		t.Errorf("%d leases left after unmount", n)
	}
	if !m.WaitLog("lease aborted") {
		t.Errorf("log:\n%s", m.Log())
	}
}

// TestExportsFailure: a disk that disagrees with the lease's manifest fails
// the export (EIO, a log line naming the check, the lease aborted, nothing
// spooled); a later access after a short pause exports again.
func TestExportsFailure(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	simVM(t, s, exportVM, true)
	m := mount(t, s)
	s.Exports.Corrupt(true)
	ovf := m.Path("exports", exportVM, exportVM+".ovf")
	if _, err := os.Stat(ovf); !errors.Is(err, syscall.EIO) {
		t.Fatalf("stat of a corrupt export: %v, want EIO", err)
	}
	if _, err := os.Stat(m.Path("disks", exportVM, "disk-0.img")); !errors.Is(err, syscall.EIO) {
		t.Errorf("stat right after: %v, want the same EIO", err)
	}
	if s.Exports.LeasesCreated() != 1 || s.Exports.ActiveLeases() != 0 {
		t.Errorf("leases: %d created, %d active", s.Exports.LeasesCreated(), s.Exports.ActiveLeases())
	}
	if !m.WaitLog("HttpNfcLeaseGetManifest") {
		t.Errorf("log does not name the manifest check:\n%s", m.Log())
	}
	if left, _ := filepath.Glob(filepath.Join(m.CacheDir, "*", "exports", "*")); len(left) != 0 {
		t.Errorf("failed export left %v", left)
	}
	s.Exports.Corrupt(false)
	time.Sleep(2100 * time.Millisecond)
	if _, err := os.Stat(ovf); err != nil {
		t.Fatal(err)
	}
	if s.Exports.LeasesCreated() != 2 {
		t.Errorf("%d leases, want 2", s.Exports.LeasesCreated())
	}
}

// TestExportsStall: a disk transfer that sends nothing for --timeout fails
// the export with EIO and aborts its lease, however well it is kept alive.
func TestExportsStall(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	simVM(t, s, exportVM, true)
	m := mount(t, s, "--timeout", "1s")
	s.Exports.Throttle(1) // a byte a second: nothing reaches the client
	if _, err := os.Stat(m.Path("exports", exportVM, exportVM+".ovf")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("stat of a stalled export: %v, want EIO", err)
	}
	// From the first disk GET: preparing the lease is not the stall.
	if first := s.Exports.FirstTransfer(); first.IsZero() {
		t.Errorf("no disk transfer was started")
	} else if took := time.Since(first); took > 10*time.Second {
		t.Errorf("stall noticed %v after the transfer started", took)
	}
	if s.Exports.ActiveLeases() != 0 {
		t.Errorf("stalled lease left active")
	}
	if !m.WaitLog("no data received") {
		t.Errorf("log:\n%s", m.Log())
	}
}

// TestExportsReadOnlyFlag: with --read-only, even snapshot folders cannot be
// made; exports still work, templates' too.
func TestExportsReadOnlyFlag(t *testing.T) {
	s := sim.StartT(t)
	tmpl := simVM(t, s, exportVM, true)
	if err := tmpl.MarkAsTemplate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	m := mount(t, s, "--read-only")
	if err := os.Mkdir(m.Path("exports", runningVM+"@b1"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir with --read-only: %v", err)
	}
	if _, err := os.Stat(m.Path("exports", exportVM, exportVM+".mf")); err != nil {
		t.Error(err)
	}
	checkManifest(t, m.Path("exports", exportVM), exportVM+".mf")
}

// TestExportsRelogin: after the server drops every session, snapshot
// mkdir/rmdir and an export log in again and go on.
func TestExportsRelogin(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	if _, err := os.ReadDir(m.Path("exports")); err != nil {
		t.Fatal(err)
	}
	if err := s.Sessions.Expire(ctx(t)); err != nil {
		t.Fatal(err)
	}
	snap := m.Path("exports", runningVM+"@relogin")
	if err := os.Mkdir(snap, 0o755); err != nil {
		t.Fatalf("mkdir after the sessions expired: %v\n%s", err, m.Log())
	}
	if err := s.Sessions.Expire(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(snap, runningVM+".mf")); err != nil {
		t.Fatalf("export after the sessions expired: %v\n%s", err, m.Log())
	}
	if err := s.Sessions.Expire(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(snap); err != nil {
		t.Fatalf("rmdir after the sessions expired: %v\n%s", err, m.Log())
	}
	if s.Exports.ActiveLeases() != 0 {
		t.Fatal("a lease is left")
	}
	if n := strings.Count(m.Log(), "logging in again"); n < 3 {
		t.Fatalf("%d re-logins logged, want one after each expiry:\n%s", n, m.Log())
	}
}
