package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/test/sim"
)

type guestEnv struct {
	s   *sim.Server
	c   *backend.Conn
	g   *Guests
	vm  *GuestVM
	dir string // the guest's "/" on the host
}

// newGuestEnv connects with the thumbprint pinned (not insecure), so that
// transfers also prove the transfer host's thumbprint is right.
func newGuestEnv(t *testing.T, login string) *guestEnv {
	t.Helper()
	s := sim.StartT(t)
	ctx := context.Background()
	u := *s.URL
	u.User = nil
	c, err := backend.Dial(ctx, backend.Config{URL: &u, User: s.URL.User, Thumbprint: s.Thumbprint, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	logins, err := NewGuestLogins(login, "")
	if err != nil {
		t.Fatal(err)
	}
	vms, err := backend.ListVMs(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	e := &guestEnv{s: s, c: c, g: NewGuests(c, logins, time.Second)}
	for _, v := range vms {
		if v.Name == "DC0_H0_VM0" {
			e.vm = e.g.VM(v)
			e.dir, err = s.Guest.Dir(s.Model().Map().Get(types.ManagedObjectReference(v.Ref)).(*simulator.VirtualMachine))
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if e.vm == nil {
		t.Fatalf("no DC0_H0_VM0 in %v", vms)
	}
	return e
}

func TestListVMs(t *testing.T) {
	e := newGuestEnv(t, "root:vmware")
	vms, err := backend.ListVMs(context.Background(), e.c)
	if err != nil {
		t.Fatal(err)
	}
	on := map[string]bool{}
	for _, v := range vms {
		on[v.Name] = v.On
	}
	if len(vms) != 6 || !on["DC0_H0_VM0"] || on[sim.DemoOffVM] || !on[sim.DemoWindowsVM] {
		t.Fatalf("%+v", vms)
	}
	for _, v := range vms {
		if v.Windows != (v.Name == sim.DemoWindowsVM) {
			t.Errorf("%s: Windows %v", v.Name, v.Windows)
		}
	}
}

func TestGuestListStatPaged(t *testing.T) {
	e := newGuestEnv(t, "root:vmware")
	ctx := context.Background()
	for i := range 250 {
		os.WriteFile(filepath.Join(e.dir, "tmp", "f"+string(rune('A'+i/26))+string(rune('a'+i%26))), []byte("x"), 0o644)
	}
	before := e.s.Guest.Stats().Calls["ListFilesInGuest"]
	list, err := e.vm.List(ctx, "/tmp")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 250 || list[0].Name != "fAa" || list[0].Size != 1 || list[0].Type != remote.GuestFile {
		t.Fatalf("%d entries, first %+v", len(list), list[0])
	}
	if calls := e.s.Guest.Stats().Calls["ListFilesInGuest"] - before; calls != 3 { // pages of 100
		t.Fatalf("%d calls for 250 entries", calls)
	}

	st, err := e.vm.Stat(ctx, "/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	if st.Type != remote.GuestFile || st.Size != int64(len("DC0_H0_VM0\n")) || st.Mode != 0o644 || st.UID != int64(os.Getuid()) ||
		st.Mtime.Nanosecond() != 123456789 {
		t.Fatalf("stat %+v", st)
	}
	st, err = e.vm.Stat(ctx, "/home/syslog")
	if err != nil || st.Type != remote.GuestSymlink || st.Target != "../var/log/syslog" {
		t.Fatalf("symlink %+v %v", st, err)
	}
	st, err = e.vm.Stat(ctx, "/var/log")
	if err != nil || st.Type != remote.GuestDir || st.Name != "log" {
		t.Fatalf("dir %+v %v", st, err)
	}
	if _, err := e.vm.Stat(ctx, "/etc/nope"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := e.vm.Stat(ctx, "/etc/host.ame"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("pattern must be literal: %v", err)
	}
}

func TestGuestSourceOneTransferPerOpen(t *testing.T) {
	e := newGuestEnv(t, "root:vmware")
	ctx := context.Background()
	st, err := e.vm.Stat(ctx, "/home/user/data/blob.bin")
	if err != nil {
		t.Fatal(err)
	}
	src := e.vm.Source("/home/user/data/blob.bin", st.Size, st.Mtime)
	want, _ := io.ReadAll(sim.DemoBytes("guest/home/user/data/blob.bin", st.Size))
	for i := range 2 {
		body, ranged, err := src.Open(ctx, 4096, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(body)
		body.Close()
		if ranged || err != nil || !bytes.Equal(b, want) {
			t.Fatalf("open %d: ranged %v, %d bytes, %v", i, ranged, len(b), err)
		}
	}
	gs := e.s.Guest.Stats()
	if gs.FromGuest["/home/user/data/blob.bin"] != 2 || gs.Gets != 2 || gs.Refused != 0 {
		t.Fatalf("stats %+v", gs)
	}
	if !strings.Contains(src.ID(), e.vm.ref.Value) || !strings.Contains(src.ID(), "/home/user/data/blob.bin") {
		t.Fatalf("ID %s", src.ID())
	}

	// The file changed since it was listed: ErrStale, never other bytes.
	os.WriteFile(filepath.Join(e.dir, "home/user/data/blob.bin"), []byte("changed"), 0o644)
	if _, _, err := src.Open(ctx, 0, -1); !errors.Is(err, remote.ErrStale) {
		t.Fatalf("changed file: %v", err)
	}
}

func TestGuestUpload(t *testing.T) {
	e := newGuestEnv(t, "root:vmware")
	ctx := context.Background()
	data := bytes.Repeat([]byte("abc"), 100000)
	mode := uint32(0o640)
	mt := time.Date(2021, 3, 4, 5, 6, 7, 890123456, time.UTC)
	st, err := e.vm.Upload(ctx, "/tmp/new.bin", bytes.NewReader(data), int64(len(data)), remote.GuestAttr{Mode: &mode, Mtime: &mt}, false)
	if err != nil || st.Size != int64(len(data)) || st.Mode != 0o640 || !st.Mtime.Equal(mt) {
		t.Fatalf("upload: %+v %v", st, err)
	}
	fi, err := os.Stat(filepath.Join(e.dir, "tmp/new.bin"))
	if err != nil || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mt) || fi.Size() != int64(len(data)) {
		t.Fatalf("uploaded: %v %v", fi, err)
	}
	if _, err := e.vm.Upload(ctx, "/tmp/empty", bytes.NewReader(nil), 0, remote.GuestAttr{}, false); err != nil {
		t.Fatal(err)
	}
	// A file believed new that exists after all is replaced, not refused.
	if st, err := e.vm.Upload(ctx, "/tmp/empty", bytes.NewReader([]byte("x")), 1, remote.GuestAttr{}, false); err != nil || st.Size != 1 {
		t.Fatalf("upload over a file believed new: %+v %v", st, err)
	}
	os.Remove(filepath.Join(e.dir, "tmp/empty"))
	os.WriteFile(filepath.Join(e.dir, "tmp/empty"), nil, 0o644)

	// A PUT that fails mid-body leaves the old file and no temporary file.
	e.s.Guest.FailNextPut(1000)
	if _, err := e.vm.Upload(ctx, "/tmp/new.bin", bytes.NewReader([]byte(strings.Repeat("z", 5000))), 5000, remote.GuestAttr{}, true); err == nil {
		t.Fatal("failing PUT succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, "tmp/new.bin")); !bytes.Equal(b, data) {
		t.Fatalf("old file changed: %d bytes", len(b))
	}
	list, _ := e.vm.List(ctx, "/tmp")
	if len(list) != 2 {
		t.Fatalf("left in /tmp: %+v", list)
	}

	if _, err := e.vm.Upload(ctx, "/nodir/x", bytes.NewReader(data), int64(len(data)), remote.GuestAttr{}, false); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("upload into a missing directory: %v", err)
	}
}

func TestGuestDirOps(t *testing.T) {
	e := newGuestEnv(t, "root:vmware")
	ctx := context.Background()
	check := func(err, kind error) {
		t.Helper()
		if kind == nil && err != nil || kind != nil && !errors.Is(err, kind) {
			t.Fatalf("got %v, want %v", err, kind)
		}
		var be *remote.Error
		if err != nil && (!errors.As(err, &be) || !strings.Contains(be.On, "DC0_H0_VM0:")) {
			t.Fatalf("not an *Error naming the VM: %#v", err)
		}
	}
	mkdir := func(p string, mode uint32) error { _, err := e.vm.Mkdir(ctx, p, mode); return err }
	check(mkdir("/tmp/d", 0o700), nil)
	if fi, _ := os.Stat(filepath.Join(e.dir, "tmp/d")); fi.Mode().Perm() != 0o700 {
		t.Fatalf("mkdir mode %v", fi.Mode())
	}
	check(mkdir("/tmp/d", 0), remote.ErrExists)
	check(mkdir("/tmp/x/y", 0), remote.ErrNotFound)
	check(e.vm.MoveFile(ctx, "/etc/hostname", "/tmp/d/h", false), nil)
	check(e.vm.Rmdir(ctx, "/tmp/d"), remote.ErrNotEmpty)
	check(e.vm.Remove(ctx, "/tmp/d"), remote.ErrIsDir)
	check(e.vm.Rmdir(ctx, "/tmp/d/h"), remote.ErrNotDir)
	check(e.vm.MoveFile(ctx, "/tmp/d", "/tmp/e", true), remote.ErrIsDir)
	check(e.vm.MoveDir(ctx, "/tmp/d", "/tmp/e"), nil)
	check(e.vm.MoveDir(ctx, "/tmp/e", "/var"), remote.ErrExists)
	check(e.vm.Remove(ctx, "/tmp/e/h"), nil)
	check(e.vm.Rmdir(ctx, "/tmp/e"), nil)
	check(e.vm.Remove(ctx, "/tmp/e"), remote.ErrNotFound)
	mode := uint32(0o600)
	at := time.Date(2022, 1, 1, 0, 0, 0, 5, time.UTC)
	check(e.vm.Chattr(ctx, "/etc/os-release", remote.GuestAttr{Mode: &mode, Atime: &at}), nil)
	st, err := e.vm.Stat(ctx, "/etc/os-release")
	if err != nil || st.Mode != 0o600 || !st.Atime.Equal(at) || st.Mtime.Nanosecond() != 123456789 {
		t.Fatalf("after chattr %+v %v", st, err)
	}
}

func TestGuestFaults(t *testing.T) {
	e := newGuestEnv(t, "root:wrong")
	ctx := context.Background()
	_, err := e.vm.List(ctx, "/")
	if !errors.Is(err, remote.ErrPermission) {
		t.Fatalf("wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("password in error: %v", err)
	}
	vms, _ := backend.ListVMs(ctx, e.c)
	logins, _ := NewGuestLogins("root:vmware", "")
	for _, v := range vms {
		if v.Name == sim.DemoOffVM {
			_, err := NewGuests(e.c, logins, time.Second).VM(v).List(ctx, "/")
			if !errors.Is(err, remote.ErrHostDown) {
				t.Fatalf("powered-off VM: %v", err)
			}
		}
	}
	none, _ := NewGuestLogins("", "")
	if _, err := NewGuests(e.c, none, time.Second).VM(remote.VM{Ref: remote.Ref(e.vm.ref), Name: e.vm.name}).List(ctx, "/"); !errors.Is(err, remote.ErrPermission) {
		t.Fatalf("no login: %v", err)
	}
}

func TestGuestConcurrentSources(t *testing.T) {
	e := newGuestEnv(t, "root:vmware")
	ctx := context.Background()
	st, err := e.vm.Stat(ctx, "/var/log/syslog")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			body, _, err := e.vm.Source("/var/log/syslog", st.Size, st.Mtime).Open(ctx, 0, -1)
			if err != nil {
				t.Error(err)
				return
			}
			defer body.Close()
			if n, err := io.Copy(io.Discard, body); n != st.Size || err != nil {
				t.Errorf("%d bytes, %v", n, err)
			}
		})
	}
	wg.Wait()
}

func TestGuestDirCached(t *testing.T) {
	e := newGuestEnv(t, "root:vmware")
	ctx := context.Background()
	calls := func() int { return e.s.Guest.Stats().Calls["ListFilesInGuest"] }
	before := calls()
	for range 3 {
		if _, err := e.vm.Lookup(ctx, "/etc", "hostname"); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls() - before; n != 1 {
		t.Fatalf("%d list calls for 3 lookups", n)
	}
	if _, err := e.vm.Mkdir(ctx, "/etc/new", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.vm.Lookup(ctx, "/etc", "new"); err != nil {
		t.Fatalf("list not refreshed after mkdir: %v", err)
	}
	// Changes patch the cached lists: no list call for what we did ourselves.
	before = calls()
	mode := uint32(0o600)
	mt := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(e.vm.Chattr(ctx, "/etc/new", remote.GuestAttr{Mode: &mode, Mtime: &mt}))
	check(e.vm.MoveFile(ctx, "/etc/hostname", "/etc/hostname2", false))
	check(e.vm.MoveDir(ctx, "/etc/new", "/etc/new2"))
	if n := calls() - before; n != 0 {
		t.Fatalf("%d list calls for changes", n)
	}
	if s, err := e.vm.Lookup(ctx, "/etc", "new2"); err != nil || s.Mode != 0o600 || !s.Mtime.Equal(mt) || s.Type != remote.GuestDir {
		t.Fatalf("renamed dir: %+v %v", s, err)
	}
	if _, err := e.vm.Lookup(ctx, "/etc", "hostname"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("old name still listed: %v", err)
	}
	check(e.vm.Remove(ctx, "/etc/hostname2"))
	if _, err := e.vm.Lookup(ctx, "/etc", "hostname2"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("removed file still listed: %v", err)
	}
	// What the lists say is what the guest says.
	cached, _ := e.vm.Dir(ctx, "/etc")
	fresh, _ := e.vm.List(ctx, "/etc")
	if fmt.Sprint(cached) != fmt.Sprint(fresh) {
		t.Fatalf("patched list\n%+v\nguest says\n%+v", cached, fresh)
	}
	vms, err := e.g.VMs(ctx)
	if err != nil || len(vms) != 6 {
		t.Fatalf("%v %v", vms, err)
	}
}

func TestGuestWindowsPaths(t *testing.T) {
	v := &GuestVM{name: "w", windows: true}
	for p, want := range map[string]string{
		"/C:":                 `C:\`,
		"/C:/":                `C:\`,
		"/D:/Users/a b/x.txt": `D:\Users\a b\x.txt`,
	} {
		if got, err := v.gpath(p); err != nil || got != want {
			t.Errorf("gpath(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	for p, kind := range map[string]error{
		"/":         remote.ErrNotPermitted,
		"/foo":      remote.ErrNotPermitted,
		"/c:":       remote.ErrNotPermitted, // drives are shown upper-case
		"/C:/a:b":   remote.ErrInvalid,
		`/C:/a\b`:   remote.ErrInvalid,
		"/C:/what?": remote.ErrInvalid,
	} {
		if _, err := v.gpath(p); !errors.Is(err, kind) {
			t.Errorf("gpath(%q): %v, want %v", p, err, kind)
		}
	}
	for _, p := range []string{"/C:", "/X"} {
		if _, err := v.target(p); !errors.Is(err, remote.ErrNotPermitted) {
			t.Errorf("target(%q): %v", p, err)
		}
	}
	if _, err := v.target("/C:/x"); err != nil {
		t.Errorf("target(/C:/x): %v", err)
	}
	if p, err := (&GuestVM{}).gpath("/a:b"); err != nil || p != "/a:b" {
		t.Errorf("POSIX guest path: %q %v", p, err)
	}
}
