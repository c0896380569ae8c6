package test

// Metadata as extended attributes: user.vsphere.* shows the ids govmomi
// (and so govc) shows; setting or removing any attribute gives ENOTSUP in
// every tree.

import (
	"errors"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vim25/mo"

	"github.com/vspherefs/vspherefs/test/sim"
)

// getxattr reads one attribute (ENODATA as "", false).
func getxattr(t *testing.T, path, name string) (string, bool) {
	t.Helper()
	n, err := syscall.Getxattr(path, name, nil)
	if errors.Is(err, syscall.ENODATA) {
		return "", false
	}
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, name, err)
	}
	buf := make([]byte, n)
	n, err = syscall.Getxattr(path, name, buf)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, name, err)
	}
	return string(buf[:n]), true
}

// listxattr is getfattr -d: every attribute with its value.
func listxattr(t *testing.T, path string) map[string]string {
	t.Helper()
	n, err := syscall.Listxattr(path, nil)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	buf := make([]byte, n)
	n, err = syscall.Listxattr(path, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v, ok := getxattr(t, path, name)
		if !ok {
			t.Errorf("%s lists %s but has no value", path, name)
		}
		out[name] = v
	}
	return out
}

func want(t *testing.T, path string, attrs map[string]string, name, value string) {
	t.Helper()
	if value == "" {
		t.Fatalf("test bug: nothing to compare %s with", name)
	}
	if attrs[name] != value {
		names := make([]string, 0, len(attrs))
		for k := range attrs {
			names = append(names, k)
		}
		sort.Strings(names)
		t.Errorf("%s: %s = %q, want %q (has %v)", path, name, attrs[name], value, names)
	}
}

func TestOpsXattrIDs(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	c := ctx(t)
	gc, rc, err := s.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	lm := library.NewManager(rc)
	lib, err := lm.GetLibraryByName(c, "demo-library")
	if err != nil {
		t.Fatal(err)
	}
	id := itemID(t, s, "demo-library", "multi")
	item, err := lm.GetLibraryItem(c, id)
	if err != nil {
		t.Fatal(err)
	}
	files, err := lm.ListLibraryItemFiles(c, id)
	if err != nil {
		t.Fatal(err)
	}

	p := m.Path("libraries", "demo-library")
	a := listxattr(t, p)
	want(t, p, a, "user.vsphere.library_id", lib.ID)
	want(t, p, a, "user.vsphere.library_type", lib.Type)
	p = m.Path("libraries", "demo-library", "multi")
	a = listxattr(t, p)
	want(t, p, a, "user.vsphere.item_id", item.ID)
	want(t, p, a, "user.vsphere.library_id", lib.ID)
	want(t, p, a, "user.vsphere.content_version", item.ContentVersion)
	for _, f := range files {
		p := m.Path("libraries", "demo-library", "multi", f.Name)
		a := listxattr(t, p)
		want(t, p, a, "user.vsphere.item_id", item.ID)
		want(t, p, a, "user.vsphere.file_version", f.Version)
		if f.Checksum != nil && f.Checksum.Checksum != "" {
			want(t, p, a, "user.vsphere.checksum", strings.ToUpper(f.Checksum.Algorithm)+":"+strings.ToLower(f.Checksum.Checksum))
		} else if v, ok := a["user.vsphere.checksum"]; ok {
			t.Errorf("%s: checksum %q where the server gives none", p, v)
		}
	}

	vm, err := find.NewFinder(gc.Client).VirtualMachine(c, runningVM)
	if err != nil {
		t.Fatal(err)
	}
	p = m.Path("vms", runningVM, "etc", "hostname")
	a = listxattr(t, p)
	want(t, p, a, "user.vsphere.vm", vm.Reference().Value)
	want(t, p, a, "user.vsphere.guest_path", "/etc/hostname")
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if _, ok := a["user.vsphere.guest_owner"]; !ok {
		t.Errorf("%s: no guest_owner (has %v)", p, a)
	}

	// A snapshot's folder and files: the VM, the snapshot, the manifest's checksum.
	snapDir := m.Path("exports", runningVM+"@x1")
	if err := os.Mkdir(snapDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Rmdir(snapDir) })
	var o mo.VirtualMachine
	if err := vm.Properties(c, vm.Reference(), []string{"snapshot"}, &o); err != nil || o.Snapshot == nil {
		t.Fatalf("snapshot: %v", err)
	}
	snap := o.Snapshot.CurrentSnapshot.Value
	for _, dir := range []string{snapDir, m.Path("disks", runningVM+"@x1")} {
		a := listxattr(t, dir)
		want(t, dir, a, "user.vsphere.vm", vm.Reference().Value)
		want(t, dir, a, "user.vsphere.snapshot", snap)
		want(t, dir, a, "user.vsphere.snapshot_name", "x1")
	}
	// The .mf waits for the end of the export; the disk's manifest_checksum
	// is there from then on (a disk may be served before).
	mf, err := os.ReadFile(snapDir + "/" + runningVM + ".mf")
	if err != nil {
		t.Fatal(err)
	}
	disk := snapDir + "/" + runningVM + "-disk-0.vmdk"
	a = listxattr(t, disk)
	line := ""
	for _, l := range strings.Split(string(mf), "\n") {
		if strings.HasPrefix(l, "SHA256("+runningVM+"-disk-0.vmdk)= ") {
			line = strings.TrimPrefix(l, "SHA256("+runningVM+"-disk-0.vmdk)= ")
		}
	}
	want(t, disk, a, "user.vsphere.manifest_checksum", "SHA256:"+line)
	want(t, disk, a, "user.vsphere.snapshot", snap)

	// The root names the status socket; the mount answers on it.
	sock, ok := getxattr(t, m.Dir, "user.vsphere.status_socket")
	if !ok || !strings.HasPrefix(sock, m.CacheDir) {
		t.Errorf("root's status_socket %q, want a socket in %s", sock, m.CacheDir)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("status socket %s: %v %v, want a 0600 socket", sock, fi, err)
	}
	// A small buffer is ERANGE, as getxattr(2) says.
	if _, err := syscall.Getxattr(m.Path("libraries", "demo-library"), "user.vsphere.library_id", make([]byte, 2)); !errors.Is(err, syscall.ERANGE) {
		t.Errorf("getxattr into 2 bytes: %v, want ERANGE", err)
	}
}

// setfattr and setfattr -x give ENOTSUP in every tree, for our names and others.
func TestOpsXattrWritesRefusedAlike(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	paths := []string{
		m.Dir, m.Path("libraries"), m.Path("libraries", "demo-library"), m.Path("libraries", "demo-library", "hello"),
		m.Path("libraries", "demo-library", "hello", "hello.txt"),
		m.Path("vms"), m.Path("vms", runningVM), m.Path("vms", runningVM, "etc", "hostname"),
		m.Path("exports"), m.Path("exports", "demo-off"), m.Path("disks"), m.Path("disks", "demo-off"),
		m.Path("disks", "demo-off", "disk-0.img"),
	}
	for _, p := range paths {
		for _, name := range []string{"user.test", "user.vsphere.item_id"} {
			if err := syscall.Setxattr(p, name, []byte("x"), 0); !errors.Is(err, syscall.ENOTSUP) {
				t.Errorf("setxattr %s %s: %v, want ENOTSUP", p, name, err)
			}
			if err := syscall.Removexattr(p, name); !errors.Is(err, syscall.ENOTSUP) {
				t.Errorf("removexattr %s %s: %v, want ENOTSUP", p, name, err)
			}
		}
	}
	if _, ok := getxattr(t, m.Path("libraries", "demo-library", "hello", "hello.txt"), "user.test"); ok {
		t.Errorf("an attribute was stored")
	}
}
