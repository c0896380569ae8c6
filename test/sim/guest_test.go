package sim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/guest"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// guestEnv is a simulator, a client, and one powered-on VM's file manager.
type guestEnv struct {
	s    *Server
	c    *govmomi.Client
	vm   *object.VirtualMachine
	fm   *guest.FileManager
	auth types.BaseGuestAuthentication
	dir  string // the guest's "/" on the host
}

func newGuestEnv(t *testing.T, opts ...Options) *guestEnv {
	t.Helper()
	return newGuestEnvOf(t, "DC0_H0_VM0", opts...)
}

// newGuestEnvOf is newGuestEnv for the VM of that name.
func newGuestEnvOf(t *testing.T, name string, opts ...Options) *guestEnv {
	t.Helper()
	s := StartT(t, opts...)
	ctx := context.Background()
	c, _, err := s.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := find.NewFinder(c.Client).VirtualMachine(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	fm, err := guest.NewOperationsManager(c.Client, vm.Reference()).FileManager(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := s.Guest.Dir(s.Model().Map().Get(vm.Reference()).(*simulator.VirtualMachine))
	if err != nil {
		t.Fatal(err)
	}
	return &guestEnv{s: s, c: c, vm: vm, fm: fm, dir: dir,
		auth: &types.NamePasswordAuthentication{Username: "root", Password: "vmware"}}
}

// fromGuest initiates a download and returns the fixed-up URL.
func (e *guestEnv) fromGuest(t *testing.T, p string) (*types.FileTransferInformation, *url.URL) {
	t.Helper()
	ctx := context.Background()
	info, err := e.fm.InitiateFileTransferFromGuest(ctx, e.auth, p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.Url, "https://*/") {
		t.Fatalf("URL host is not *: %s", info.Url)
	}
	u, err := e.fm.TransferURL(ctx, info.Url)
	if err != nil {
		t.Fatal(err)
	}
	return info, u
}

func (e *guestEnv) get(t *testing.T, u *url.URL) (int, []byte, error) {
	t.Helper()
	res, err := e.c.Client.Client.Client.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

func TestGuestFromGuestOneShot(t *testing.T) {
	e := newGuestEnv(t)
	info, u := e.fromGuest(t, "/var/log/syslog")
	if info.Size != 64<<10 {
		t.Fatalf("size %d", info.Size)
	}
	code, b, err := e.get(t, u)
	want, _ := io.ReadAll(DemoBytes("guest/var/log/syslog", 64<<10))
	if code != 200 || err != nil || !bytes.Equal(b, want) {
		t.Fatalf("first GET: %d, %d bytes, %v", code, len(b), err)
	}
	if code, _, _ := e.get(t, u); code != http.StatusNotFound {
		t.Fatalf("second GET: %d, want 404", code)
	}
	st := e.s.Guest.Stats()
	if st.FromGuest["/var/log/syslog"] != 1 || st.Gets != 1 || st.Refused != 1 || st.GetBytes != 64<<10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestGuestConcurrentGetRefused(t *testing.T) {
	e := newGuestEnv(t)
	e.s.Guest.SetRate(256 << 10) // the 1 MiB blob takes about 4s
	_, u := e.fromGuest(t, "/home/user/data/blob.bin")
	res, err := e.c.Client.Client.Client.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if code, _, _ := e.get(t, u); code != http.StatusConflict {
		t.Fatalf("concurrent GET: %d, want 409", code)
	}
	e.s.Guest.SetRate(0)
	if n, err := io.Copy(io.Discard, res.Body); err != nil || n != 1<<20+7 {
		t.Fatalf("first GET: %d bytes, %v", n, err)
	}
}

func TestGuestURLExpiry(t *testing.T) {
	e := newGuestEnv(t)
	_, u := e.fromGuest(t, "/etc/hostname")
	e.s.Guest.Advance(9 * time.Minute)
	_, u2 := e.fromGuest(t, "/etc/hostname")
	e.s.Guest.Advance(2 * time.Minute)
	if code, _, _ := e.get(t, u); code != http.StatusNotFound {
		t.Fatalf("GET after 11 minutes: %d, want 404", code)
	}
	if code, b, _ := e.get(t, u2); code != 200 || string(b) != "DC0_H0_VM0\n" {
		t.Fatalf("GET after 2 minutes: %d %q", code, b)
	}

	// A URL that expires while its body is being sent cuts the stream short.
	e.s.Guest.SetRate(512 << 10)
	_, u = e.fromGuest(t, "/home/user/data/blob.bin")
	res, err := e.c.Client.Client.Client.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.ReadFull(res.Body, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	e.s.Guest.Advance(11 * time.Minute)
	if n, err := io.Copy(io.Discard, res.Body); err == nil {
		t.Fatalf("expired stream ended cleanly after %d more bytes", n)
	}
}

func TestGuestPowerOff(t *testing.T) {
	e := newGuestEnv(t)
	ctx := context.Background()
	e.s.Guest.SetRate(256 << 10)
	_, unused := e.fromGuest(t, "/etc/hostname")
	_, u := e.fromGuest(t, "/home/user/data/blob.bin")
	res, err := e.c.Client.Client.Client.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	task, err := e.vm.PowerOff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err == nil {
		t.Fatal("transfer went on after power-off")
	}
	_, err = e.fm.InitiateFileTransferFromGuest(ctx, e.auth, "/etc/hostname")
	if !fault.Is(err, &types.InvalidPowerState{}) {
		t.Fatalf("initiate on powered-off VM: %v", err)
	}
	task, _ = e.vm.PowerOn(ctx)
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.get(t, unused); code != http.StatusNotFound {
		t.Fatalf("URL from before a power cycle: %d, want 404", code)
	}
}

func TestGuestDemoOffVM(t *testing.T) {
	e := newGuestEnv(t)
	ctx := context.Background()
	vm, err := find.NewFinder(e.c.Client).VirtualMachine(ctx, DemoOffVM)
	if err != nil {
		t.Fatal(err)
	}
	fm, err := guest.NewOperationsManager(e.c.Client, vm.Reference()).FileManager(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fm.ListFiles(ctx, e.auth, "/", 0, 0, "")
	if !fault.Is(err, &types.InvalidPowerState{}) {
		t.Fatalf("list on %s: %v", DemoOffVM, err)
	}
}

func TestGuestLogin(t *testing.T) {
	e := newGuestEnv(t, Options{GuestLogin: url.UserPassword("admin", "s3cret")})
	ctx := context.Background()
	_, err := e.fm.ListFiles(ctx, e.auth, "/", 0, 0, "")
	if !fault.Is(err, &types.InvalidGuestLogin{}) {
		t.Fatalf("root/vmware against admin/s3cret: %v", err)
	}
	good := &types.NamePasswordAuthentication{Username: "admin", Password: "s3cret"}
	if _, err := e.fm.ListFiles(ctx, good, "/", 0, 0, ""); err != nil {
		t.Fatal(err)
	}
}

func TestGuestAttributes(t *testing.T) {
	e := newGuestEnv(t)
	ctx := context.Background()
	info, _ := e.fromGuest(t, "/etc/hostname")
	a := info.Attributes.(*types.GuestPosixFileAttributes)
	if !a.ModificationTime.Equal(guestDemoTime) || a.Permissions&0o7777 != 0o644 || a.Permissions&0o170000 != 0o100000 || a.OwnerId == nil {
		t.Fatalf("attributes %+v mtime %v", a, a.ModificationTime)
	}
	for _, p := range []string{"/etc", "/home/syslog"} {
		_, err := e.fm.InitiateFileTransferFromGuest(ctx, e.auth, p)
		if !fault.Is(err, &types.NotAFile{}) {
			t.Fatalf("%s as a source: %v", p, err)
		}
	}
	ls, err := e.fm.ListFiles(ctx, e.auth, "/home", 0, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	var link *types.GuestFileInfo
	for i, f := range ls.Files {
		if f.Path == "syslog" {
			link = &ls.Files[i]
		}
	}
	if link == nil || link.Type != "symlink" || link.Attributes.GetGuestFileAttributes().SymlinkTarget != "../var/log/syslog" {
		t.Fatalf("symlink entry %+v", link)
	}

	// ChangeFileAttributes keeps sub-second times and sets the mode.
	mt := time.Date(2020, 1, 2, 3, 4, 5, 600700800, time.UTC)
	err = e.fm.ChangeFileAttributes(ctx, e.auth, "/etc/hostname", &types.GuestPosixFileAttributes{
		GuestFileAttributes: types.GuestFileAttributes{ModificationTime: &mt},
		Permissions:         0o600,
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(e.dir, "etc/hostname"))
	if err != nil || !fi.ModTime().Equal(mt) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after chattr: %v %v %v", fi.ModTime(), fi.Mode(), err)
	}
}

func TestGuestListPaging(t *testing.T) {
	e := newGuestEnv(t)
	ctx := context.Background()
	for i := range 25 {
		os.WriteFile(filepath.Join(e.dir, "tmp", string(rune('a'+i))), nil, 0o644)
	}
	e.s.Guest.SetPageSize(10)
	var names []string
	calls := 0
	for {
		ls, err := e.fm.ListFiles(ctx, e.auth, "/tmp", int32(len(names)), 0, "")
		if err != nil {
			t.Fatal(err)
		}
		calls++
		for _, f := range ls.Files {
			names = append(names, f.Path)
		}
		if ls.Remaining != int32(25-len(names)) {
			t.Fatalf("remaining %d after %d", ls.Remaining, len(names))
		}
		if ls.Remaining == 0 {
			break
		}
	}
	if calls != 3 || len(names) != 25 || names[0] != "a" || names[24] != "y" {
		t.Fatalf("%d calls: %v", calls, names)
	}
	ls, err := e.fm.ListFiles(ctx, e.auth, "/tmp", 20, 3, "")
	if err != nil || len(ls.Files) != 3 || ls.Remaining != 2 || ls.Files[0].Path != "u" {
		t.Fatalf("index 20 max 3: %+v %v", ls, err)
	}
	ls, err = e.fm.ListFiles(ctx, e.auth, "/tmp", 0, 0, "^[xy]$")
	if err != nil || len(ls.Files) != 2 {
		t.Fatalf("pattern: %+v %v", ls, err)
	}
}

func TestGuestFailedPutKeepsOldFile(t *testing.T) {
	e := newGuestEnv(t)
	ctx := context.Background()
	put := func(p string, data []byte, overwrite bool) error {
		u, err := e.fm.InitiateFileTransferToGuest(ctx, e.auth, p, &types.GuestPosixFileAttributes{}, int64(len(data)), overwrite)
		if err != nil {
			return err
		}
		tu, err := e.fm.TransferURL(ctx, u)
		if err != nil {
			return err
		}
		up := soap.DefaultUpload
		up.ContentLength = int64(len(data))
		return e.c.Client.Upload(ctx, bytes.NewReader(data), tu, &up)
	}
	newData := bytes.Repeat([]byte("new"), 100000)
	e.s.Guest.FailNextPut(1000)
	if err := put("/etc/hostname", newData, true); err == nil {
		t.Fatal("failing PUT succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, "etc/hostname")); string(b) != "DC0_H0_VM0\n" {
		t.Fatalf("old file changed: %q", b)
	}
	if spool, _ := os.ReadDir(filepath.Join(e.dir, "../spool")); len(spool) != 0 {
		t.Fatalf("spool left behind: %v", spool)
	}
	if err := put("/etc/hostname", newData, false); !fault.Is(err, &types.FileAlreadyExists{}) {
		t.Fatalf("no overwrite: %v", err)
	}
	if err := put("/etc/hostname", newData, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, "etc/hostname")); !bytes.Equal(b, newData) {
		t.Fatalf("new file: %d bytes", len(b))
	}
	fi, _ := os.Stat(filepath.Join(e.dir, "etc/hostname"))
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode not kept from the replaced file: %v", fi.Mode())
	}
	if err := put("/nodir/x", newData, true); !fault.Is(err, &types.FileNotFound{}) {
		t.Fatalf("missing parent: %v", err)
	}
}

func TestGuestFileOps(t *testing.T) {
	e := newGuestEnv(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.fm.MakeDirectory(ctx, e.auth, "/tmp/a/b/c", true))
	if err := e.fm.MakeDirectory(ctx, e.auth, "/tmp/a", false); !fault.Is(err, &types.FileAlreadyExists{}) {
		t.Fatalf("mkdir existing: %v", err)
	}
	if err := e.fm.MakeDirectory(ctx, e.auth, "/tmp/x/y", false); !fault.Is(err, &types.FileNotFound{}) {
		t.Fatalf("mkdir without parent: %v", err)
	}
	if err := e.fm.DeleteDirectory(ctx, e.auth, "/tmp/a", false); !fault.Is(err, &types.DirectoryNotEmpty{}) {
		t.Fatalf("rmdir non-empty: %v", err)
	}
	if err := e.fm.DeleteFile(ctx, e.auth, "/tmp/a"); !fault.Is(err, &types.NotAFile{}) {
		t.Fatalf("rm directory: %v", err)
	}
	if err := e.fm.MoveFile(ctx, e.auth, "/tmp/a", "/tmp/z", false); !fault.Is(err, &types.NotAFile{}) {
		t.Fatalf("MoveFile of a directory: %v", err)
	}
	must(e.fm.MoveDirectory(ctx, e.auth, "/tmp/a", "/tmp/z"))
	must(e.fm.MakeDirectory(ctx, e.auth, "/tmp/a", false))
	if err := e.fm.MoveDirectory(ctx, e.auth, "/tmp/z", "/tmp/a"); !fault.Is(err, &types.FileAlreadyExists{}) {
		t.Fatalf("MoveDirectory onto existing: %v", err)
	}
	must(e.fm.MoveFile(ctx, e.auth, "/etc/os-release", "/tmp/z/os", false))
	if err := e.fm.MoveFile(ctx, e.auth, "/etc/hostname", "/tmp/z/os", false); !fault.Is(err, &types.FileAlreadyExists{}) {
		t.Fatalf("MoveFile no overwrite: %v", err)
	}
	must(e.fm.MoveFile(ctx, e.auth, "/etc/hostname", "/tmp/z/os", true))
	if b, _ := os.ReadFile(filepath.Join(e.dir, "tmp/z/os")); string(b) != "DC0_H0_VM0\n" {
		t.Fatalf("moved file: %q", b)
	}
	if err := e.fm.DeleteFile(ctx, e.auth, "/etc/hostname"); !fault.Is(err, &types.FileNotFound{}) {
		t.Fatalf("rm missing: %v", err)
	}
	must(e.fm.DeleteDirectory(ctx, e.auth, "/tmp/z", true))
	if _, err := os.Stat(filepath.Join(e.dir, "tmp/z")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rmdir -r: %v", err)
	}
	p, err := e.fm.CreateTemporaryFile(ctx, e.auth, "pre-", ".suf", "")
	must(err)
	if !strings.HasPrefix(p, "/tmp/pre-") || !strings.HasSuffix(p, ".suf") {
		t.Fatalf("temp file %s", p)
	}
	d, err := e.fm.CreateTemporaryDirectory(ctx, e.auth, "d-", "", "/var/tmp")
	must(err)
	if fi, err := os.Stat(filepath.Join(e.dir, d)); err != nil || !fi.IsDir() {
		t.Fatalf("temp dir %s: %v", d, err)
	}
	if _, err := e.fm.ListFiles(ctx, e.auth, "/../../..", 0, 0, ""); err != nil {
		t.Fatalf("/.. is /: %v", err)
	}
}

// TestGuestConcurrentOps checks the guests under -race with calls in parallel.
func TestGuestConcurrentOps(t *testing.T) {
	e := newGuestEnv(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			dir := "/tmp/c" + string(rune('0'+i))
			if err := e.fm.MakeDirectory(ctx, e.auth, dir, false); err != nil {
				t.Error(err)
				return
			}
			_, u := e.fromGuest(t, "/var/log/messages")
			if code, b, _ := e.get(t, u); code != 200 || len(b) != 3000 {
				t.Errorf("GET %d %d", code, len(b))
			}
			if _, err := e.fm.ListFiles(ctx, e.auth, "/tmp", 0, 0, ""); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
