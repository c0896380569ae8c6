package test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"golang.org/x/sys/unix"

	"github.com/vspherefs/vspherefs/test/sim"
)

// TestWalkClean: on a healthy simulator, find and du of the whole mount
// exit 0 and log no error; the folders that cannot be reached in a VM's
// present state (a running VM's export, a powered-off guest) list nothing
// and the log says why.
func TestWalkClean(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	for _, cmd := range [][]string{{"find", m.Dir, "-type", "f"}, {"du", "-s", m.Dir}} {
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(cmd, " "), err, lastLines(string(out), 20))
		}
	}
	for _, want := range []string{"path=exports/" + guestVM, "path=disks/" + guestVM, "path=vms/demo-off"} {
		if !strings.Contains(m.Log(), `msg="listed empty" `+want) {
			t.Errorf("no INFO line saying why %s lists nothing", want)
		}
	}
	// xattr writes in exports/ and disks/ are ENOTSUP, as in every tree (tools skip them).
	for _, p := range []string{m.Path("exports"), m.Path("exports", "demo-off"), m.Path("disks", "demo-off", "disk-0.img"), m.Path("exports", "demo-off", "demo-off.ovf")} {
		if err := unix.Setxattr(p, "user.x", []byte("1"), 0); !errors.Is(err, syscall.ENOTSUP) {
			t.Errorf("setxattr %s: %v, want ENOTSUP", p, err)
		}
		if err := unix.Removexattr(p, "user.x"); !errors.Is(err, syscall.ENOTSUP) {
			t.Errorf("removexattr %s: %v, want ENOTSUP", p, err)
		}
	}
	for _, line := range strings.Split(m.Log(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("error logged by a clean walk: %s", line)
		}
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestStatfs: every tree answers statfs with a 4096-byte block and NAME_MAX
// 255; libraries/<lib> and below give the library's datastore's capacity,
// the rest the sum over the accessible datastores.
func TestStatfs(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	c := ctx(t)
	vc, rc, err := s.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	v, err := view.NewManager(vc.Client).CreateContainerView(c, vc.ServiceContent.RootFolder, []string{"Datastore"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Destroy(context.Background())
	var dss []mo.Datastore
	if err := v.Retrieve(c, []string{"Datastore"}, []string{"summary"}, &dss); err != nil {
		t.Fatal(err)
	}
	capacity := map[string]int64{}
	var total int64
	for _, ds := range dss {
		capacity[ds.Self.Value] = ds.Summary.Capacity
		if ds.Summary.Accessible {
			total += ds.Summary.Capacity
		}
	}
	lib, err := library.NewManager(rc).GetLibraryByName(c, "demo-library")
	if err != nil || len(lib.Storage) == 0 {
		t.Fatalf("demo-library storage: %v", err)
	}
	libCap := capacity[lib.Storage[0].DatastoreID]
	if libCap == 0 || libCap == 1<<40 || total == 1<<40 {
		t.Fatalf("the simulator's datastores must differ from the figures used without any: %d, %d", libCap, total)
	}
	for _, p := range []struct {
		rel []string
		cap int64
	}{
		{nil, total},
		{[]string{"libraries"}, total},
		{[]string{"libraries", "demo-library"}, libCap},
		{[]string{"libraries", "demo-library", "hello"}, libCap},
		{[]string{"libraries", "demo-library", "hello", "hello.txt"}, libCap},
		{[]string{"vms"}, total},
		{[]string{"vms", guestVM, "etc"}, total},
		{[]string{"vms", guestVM, "etc", "hostname"}, total},
		{[]string{"exports"}, total},
		{[]string{"disks", "demo-off"}, total},
	} {
		path := filepath.Join(append([]string{m.Dir}, p.rel...)...)
		var st unix.Statfs_t
		err := unix.Statfs(path, &st)
		for err == unix.EINTR {
			// The Go runtime's preemption signal interrupts a statfs that
			// waits for the mount (the mount answers EINTR, as it should);
			// os's wrappers retry then, unix's do not.
			err = unix.Statfs(path, &st)
		}
		if err != nil {
			t.Errorf("statfs %s: %v", path, err)
			continue
		}
		if st.Bsize != 4096 || st.Namelen != 255 || st.Frsize != 4096 {
			t.Errorf("statfs %s: bsize %d frsize %d namelen %d", path, st.Bsize, st.Frsize, st.Namelen)
		}
		if got := int64(st.Blocks) * st.Bsize; got != p.cap/4096*4096 {
			t.Errorf("statfs %s: capacity %d, want %d", path, got, p.cap)
		}
		if st.Bfree > st.Blocks || st.Bavail != st.Bfree {
			t.Errorf("statfs %s: free %d, avail %d of %d blocks", path, st.Bfree, st.Bavail, st.Blocks)
		}
	}
	if out := strings.TrimSpace(run(t, "getconf", "NAME_MAX", m.Path("vms", guestVM, "etc"))); out != "255" {
		t.Errorf("getconf NAME_MAX in a subfolder: %s", out)
	}
}
