package library

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/test/sim"
)

// writeFixture is a simulator, a writer on our connection, and an independent
// govmomi client to check what the server holds.
type writeFixture struct {
	t   *testing.T
	s   *sim.Server
	ctx context.Context
	w   *LibraryWriter
	c   *backend.Conn
	lm  *library.Manager // independent client
	rc  *rest.Client
	dir string
}

func newWriteFixture(t *testing.T) *writeFixture {
	t.Helper()
	s := sim.StartT(t)
	ctx := context.Background()
	u := *s.URL
	u.User = nil
	c, err := backend.Dial(ctx, backend.Config{URL: &u, User: s.URL.User, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	_, rc, err := s.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := NewLibraryWriter(c)
	return &writeFixture{t: t, s: s, ctx: ctx, w: w, c: c, lm: library.NewManager(rc), rc: rc, dir: t.TempDir()}
}

// stage writes a local staged file.
func (f *writeFixture) stage(name string, b []byte) remote.Staged {
	f.t.Helper()
	p := filepath.Join(f.dir, fmt.Sprintf("%d-%s", len(b), name))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return remote.Staged{Name: name, Path: p}
}

func (f *writeFixture) libID(name string) string {
	f.t.Helper()
	l, err := f.lm.GetLibraryByName(f.ctx, name)
	if err != nil {
		f.t.Fatal(err)
	}
	return l.ID
}

func (f *writeFixture) itemID(lib, item string) string {
	f.t.Helper()
	ids, err := f.lm.FindLibraryItems(f.ctx, library.FindItem{LibraryID: f.libID(lib), Name: item})
	if err != nil || len(ids) != 1 {
		f.t.Fatalf("find %s/%s: %v %v", lib, item, ids, err)
	}
	return ids[0]
}

// snapshot is an item as the independent client sees it: version, file
// entries (duplicates counted) and bytes read through a download session.
type snapshot struct {
	version string
	size    int64
	files   map[string]int
	bytes   map[string][]byte
	sums    map[string]*library.Checksum
}

func (f *writeFixture) snapshot(itemID string) snapshot {
	f.t.Helper()
	it, err := f.lm.GetLibraryItem(f.ctx, itemID)
	if err != nil {
		f.t.Fatal(err)
	}
	list, err := f.lm.ListLibraryItemFiles(f.ctx, itemID)
	if err != nil {
		f.t.Fatal(err)
	}
	sn := snapshot{version: it.ContentVersion, size: it.Size, files: map[string]int{}, bytes: map[string][]byte{}, sums: map[string]*library.Checksum{}}
	if len(list) == 0 {
		return sn
	}
	sid, err := f.lm.CreateLibraryItemDownloadSession(f.ctx, library.Session{LibraryItemID: itemID})
	if err != nil {
		f.t.Fatal(err)
	}
	defer f.lm.DeleteLibraryItemDownloadSession(f.ctx, sid)
	for _, fi := range list {
		sn.files[fi.Name]++
		sn.sums[fi.Name] = fi.Checksum
		if _, err := f.lm.PrepareLibraryItemDownloadSessionFile(f.ctx, sid, fi.Name); err != nil {
			f.t.Fatal(err)
		}
		var d *library.DownloadFile
		for range 10 {
			if d, err = f.lm.GetLibraryItemDownloadSessionFile(f.ctx, sid, fi.Name); err != nil {
				f.t.Fatal(err)
			}
			if d.Status == "PREPARED" {
				break
			}
		}
		u, _ := soap.ParseURL(d.DownloadEndpoint.URI)
		p := soap.DefaultDownload
		p.Headers = map[string]string{"vmware-api-session-id": f.rc.SessionID()}
		r, _, err := f.rc.Download(f.ctx, u, &p)
		if err != nil {
			f.t.Fatal(err)
		}
		sn.bytes[fi.Name], err = io.ReadAll(r)
		r.Close()
		if err != nil {
			f.t.Fatal(err)
		}
	}
	return sn
}

func (sn snapshot) same(o snapshot) bool {
	if sn.version != o.version || sn.size != o.size || fmt.Sprint(sn.files) != fmt.Sprint(o.files) {
		return false
	}
	for n, b := range sn.bytes {
		if !bytes.Equal(b, o.bytes[n]) {
			return false
		}
	}
	return true
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func TestCommitRoundTrip(t *testing.T) {
	f := newWriteFixture(t)
	id, err := f.w.CreateItem(f.ctx, f.libID("demo-library"), "written", "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"empty": {}, "small.txt": []byte("hello, library\n"), "big.bin": pattern(8<<20+3, 1)}
	var version string
	for name, b := range want {
		if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage(name, b)}, nil); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sn := f.snapshot(id)
		if !bytes.Equal(sn.bytes[name], b) || sn.files[name] != 1 || sn.version == version {
			t.Fatalf("%s: read back %d bytes, %d entries, version %s after %s", name, len(sn.bytes[name]), sn.files[name], sn.version, version)
		}
		if c := sn.sums[name]; c == nil || c.Algorithm != "SHA256" {
			t.Fatalf("%s: checksum %+v, want SHA256", name, c)
		}
		version = sn.version
	}
	// Overwrite: the same name again, one entry, new bytes.
	next := []byte("replaced")
	if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("big.bin", next)}, nil); err != nil {
		t.Fatal(err)
	}
	sn := f.snapshot(id)
	if fmt.Sprint(sn.files) != "map[big.bin:1 empty:1 small.txt:1]" || !bytes.Equal(sn.bytes["big.bin"], next) {
		t.Fatalf("after overwrite: %v %q", sn.files, sn.bytes["big.bin"])
	}
	if sn.size != int64(len(next)+len(want["small.txt"])) {
		t.Fatalf("item size %d", sn.size)
	}
}

const ovfDescriptor = `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="disk1.vmdk" ovf:id="file1"/></References>
  <VirtualSystem ovf:id="vm"/>
</Envelope>`

// An OVF template's files go in one session; alone, the descriptor fails
// validation and the item stays as it was.
func TestCommitSeveralFilesInOneSession(t *testing.T) {
	f := newWriteFixture(t)
	id, err := f.w.CreateItem(f.ctx, f.libID("demo-library"), "template", "ovf")
	if err != nil {
		t.Fatal(err)
	}
	before := f.snapshot(id)
	err = f.w.Commit(f.ctx, id, []remote.Staged{f.stage("t.ovf", []byte(ovfDescriptor))}, nil)
	var be *remote.Error
	if !errors.As(err, &be) || be.Call != "updatesession/file:validate" || !strings.Contains(be.Fault, "disk1.vmdk") {
		t.Fatalf("descriptor alone: %v", err)
	}
	if !f.snapshot(id).same(before) {
		t.Fatal("failed validation changed the item")
	}
	disk := pattern(1<<20, 9)
	if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("t.ovf", []byte(ovfDescriptor)), f.stage("disk1.vmdk", disk)}, nil); err != nil {
		t.Fatal(err)
	}
	sn := f.snapshot(id)
	if len(sn.files) != 2 || !bytes.Equal(sn.bytes["disk1.vmdk"], disk) || string(sn.bytes["t.ovf"]) != ovfDescriptor {
		t.Fatalf("template files %v", sn.files)
	}
	if len(f.s.Updates.Active("")) != 0 {
		t.Fatal("sessions left active")
	}
}

// A failure at each step leaves the item as it was, names the step, and
// leaves no session active (the next commit can run).
func TestCommitFailureLeavesItem(t *testing.T) {
	f := newWriteFixture(t)
	id := f.itemID("demo-library", "hello")
	before := f.snapshot(id)
	for _, c := range []struct{ step, call string }{
		{sim.FailCreate, "updatesession:create"},
		{sim.FailAdd, "updatesession/file:add"},
		{sim.FailPut, "PUT"},
		{sim.FailValidate, "updatesession/file:validate"},
		{sim.FailComplete, "updatesession:complete"},
		{sim.FailApply, "updatesession:complete"},
	} {
		f.s.Updates.FailNext(c.step)
		err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", pattern(2<<20, 3))}, nil)
		var be *remote.Error
		if !errors.As(err, &be) || be.Call != c.call || be.On == "" || be.Fault == "" {
			t.Fatalf("%s: got %v (%#v)", c.step, err, be)
		}
		t.Logf("%s: %v", c.step, err)
		if !f.snapshot(id).same(before) {
			t.Fatalf("%s: item changed", c.step)
		}
		if a := f.s.Updates.Active(id); len(a) != 0 {
			t.Fatalf("%s: session left active", c.step)
		}
	}
	if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", []byte("at last"))}, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.snapshot(id).bytes["hello.txt"]; string(got) != "at last" {
		t.Fatalf("after the failures: %q", got)
	}
}

// A commit interrupted mid-PUT abandons its session: the item stays as it was.
func TestCommitCancelledMidPut(t *testing.T) {
	f := newWriteFixture(t)
	id := f.itemID("demo-library", "hello")
	before := f.snapshot(id)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	start := f.s.Updates.Received()
	go func() {
		for f.s.Updates.Received() == start && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	err := f.w.Commit(ctx, id, []remote.Staged{f.stage("hello.txt", pattern(64<<20, 5))}, nil)
	var be *remote.Error
	if !errors.As(err, &be) || be.Call != "PUT" || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled commit: %v", err)
	}
	if !f.snapshot(id).same(before) {
		t.Fatal("item changed")
	}
	if len(f.s.Updates.Active(id)) != 0 {
		t.Fatal("session left active")
	}
}

func TestCommitBusyItem(t *testing.T) {
	f := newWriteFixture(t)
	id := f.itemID("demo-library", "hello")
	sid, err := f.lm.CreateLibraryItemUpdateSession(f.ctx, library.Session{LibraryItemID: id})
	if err != nil {
		t.Fatal(err)
	}
	err = f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", []byte("x"))}, nil)
	if !errors.Is(err, remote.ErrBusy) {
		t.Fatalf("commit while another session is active: %v", err)
	}
	if err := f.lm.CancelLibraryItemUpdateSession(f.ctx, sid); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", []byte("x"))}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestCommitFallsBackToSHA1(t *testing.T) {
	f := newWriteFixture(t)
	f.s.Updates.SetChecksumAlgorithms("SHA1", "MD5")
	id := f.itemID("demo-library", "hello")
	for i := range 2 {
		if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", []byte{byte(i)})}, nil); err != nil {
			t.Fatal(err)
		}
		if c := f.snapshot(id).sums["hello.txt"]; c == nil || c.Algorithm != "SHA1" {
			t.Fatalf("checksum %+v", c)
		}
	}
}

func TestRemoveFile(t *testing.T) {
	f := newWriteFixture(t)
	id := f.itemID("demo-library", "multi")
	before := f.snapshot(id)
	if err := f.w.RemoveFile(f.ctx, id, "a.bin"); err != nil {
		t.Fatal(err)
	}
	sn := f.snapshot(id)
	if fmt.Sprint(sn.files) != "map[b.bin:1 readme.txt:1]" || !bytes.Equal(sn.bytes["b.bin"], before.bytes["b.bin"]) {
		t.Fatalf("after remove: %v", sn.files)
	}
	err := f.w.RemoveFile(f.ctx, id, "a.bin")
	var be *remote.Error
	if !errors.As(err, &be) || be.Call != "updatesession/file:remove" || !errors.Is(err, remote.ErrInvalid) {
		t.Fatalf("removing a missing file: %v", err)
	}
	if len(f.s.Updates.Active(id)) != 0 {
		t.Fatal("session left active")
	}
}

func TestLibraryAndItemAdmin(t *testing.T) {
	f := newWriteFixture(t)
	ds, err := PickDatastore(f.ctx, f.c, "", 0)
	if err != nil || ds == "" {
		t.Fatalf("default datastore: %q %v", ds, err)
	}
	if byName, err := PickDatastore(f.ctx, f.c, "LocalDS_0", 0); err != nil || byName != ds {
		t.Fatalf("LocalDS_0: %q %v", byName, err)
	}
	if _, err := PickDatastore(f.ctx, f.c, "nosuch", 0); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("unknown datastore: %v", err)
	}
	if _, err := PickDatastore(f.ctx, f.c, "", 1<<62); !errors.Is(err, remote.ErrNoSpace) {
		t.Fatalf("no datastore fits: %v", err)
	}
	lib, err := f.w.CreateLibrary(f.ctx, "made", ds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.CreateLibrary(f.ctx, "bad", "datastore-nosuch"); !errors.Is(err, remote.ErrInvalid) {
		t.Fatalf("unknown datastore: %v", err)
	}
	a, err := f.w.CreateItem(f.ctx, lib, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.CreateItem(f.ctx, lib, "b", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.CreateItem(f.ctx, lib, "a", ""); !errors.Is(err, remote.ErrExists) {
		t.Fatalf("duplicate item: %v", err)
	}
	if err := f.w.RenameItem(f.ctx, a, "b"); !errors.Is(err, remote.ErrExists) {
		t.Fatalf("rename onto b: %v", err)
	}
	if err := f.w.Commit(f.ctx, a, []remote.Staged{f.stage("f", []byte("kept across rename"))}, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.w.RenameItem(f.ctx, a, "c"); err != nil {
		t.Fatal(err)
	}
	if got := f.snapshot(f.itemID("made", "c")).bytes["f"]; string(got) != "kept across rename" {
		t.Fatalf("renamed item holds %q", got)
	}
	if err := f.w.DeleteItem(f.ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := f.w.DeleteItem(f.ctx, a); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	if err := f.w.DeleteLibrary(f.ctx, lib); err != nil {
		t.Fatal(err)
	}
	if _, err := f.lm.GetLibraryByID(f.ctx, lib); err == nil {
		t.Fatal("library still there")
	}
}
