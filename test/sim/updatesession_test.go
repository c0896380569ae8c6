package sim

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25/soap"
)

// itemState is what an independent client sees of an item.
type itemState struct {
	version string
	size    int64
	files   map[string]int // name -> entries (duplicates show as >1)
	bytes   map[string][]byte
}

type updateFixture struct {
	t   *testing.T
	s   *Server
	ctx context.Context
	rc  *rest.Client
	lm  *library.Manager
}

func newUpdateFixture(t *testing.T) *updateFixture {
	s := StartT(t)
	ctx := context.Background()
	_, rc, err := s.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &updateFixture{t: t, s: s, ctx: ctx, rc: rc, lm: library.NewManager(rc)}
}

func (f *updateFixture) itemID(lib, item string) string {
	f.t.Helper()
	l, err := f.lm.GetLibraryByName(f.ctx, lib)
	if err != nil {
		f.t.Fatal(err)
	}
	ids, err := f.lm.FindLibraryItems(f.ctx, library.FindItem{LibraryID: l.ID, Name: item})
	if err != nil || len(ids) != 1 {
		f.t.Fatalf("find %s/%s: %v %v", lib, item, ids, err)
	}
	return ids[0]
}

// state reads an item through the item and file APIs and a download session.
func (f *updateFixture) state(lib, item string) itemState {
	f.t.Helper()
	id := f.itemID(lib, item)
	it, err := f.lm.GetLibraryItem(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	files, err := f.lm.ListLibraryItemFiles(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	st := itemState{version: it.ContentVersion, size: it.Size, files: map[string]int{}, bytes: map[string][]byte{}}
	for _, fi := range files {
		st.files[fi.Name]++
		_, b := download(f.t, f.s, lib, item, fi.Name, nil)
		st.bytes[fi.Name] = b
	}
	return st
}

func (f *updateFixture) create(itemID string) string {
	f.t.Helper()
	sid, err := f.lm.CreateLibraryItemUpdateSession(f.ctx, library.Session{LibraryItemID: itemID})
	if err != nil {
		f.t.Fatal(err)
	}
	return sid
}

// push adds a file with a SHA1 checksum and PUTs its bytes.
func (f *updateFixture) push(sid, name string, b []byte) error {
	sum := sha1.Sum(b)
	info, err := f.lm.AddLibraryItemFile(f.ctx, sid, library.UpdateFile{
		Name: name, SourceType: "PUSH", Size: int64(len(b)),
		Checksum: &library.Checksum{Algorithm: "SHA1", Checksum: fmt.Sprintf("%x", sum)},
	})
	if err != nil {
		return err
	}
	return f.put(info, b)
}

func (f *updateFixture) put(info *library.UpdateFile, b []byte) error {
	u, err := soap.ParseURL(info.UploadEndpoint.URI)
	if err != nil {
		return err
	}
	p := soap.DefaultUpload
	p.ContentLength = int64(len(b))
	return f.rc.Upload(f.ctx, io.NopCloser(bytes.NewReader(b)), u, &p)
}

func sameState(t *testing.T, what string, got, want itemState) {
	t.Helper()
	if got.version != want.version || got.size != want.size || fmt.Sprint(got.files) != fmt.Sprint(want.files) {
		t.Fatalf("%s: item changed: version %s size %d files %v, want %s %d %v", what, got.version, got.size, got.files, want.version, want.size, want.files)
	}
	for n, b := range want.bytes {
		if !bytes.Equal(got.bytes[n], b) {
			t.Fatalf("%s: %s changed", what, n)
		}
	}
}

func TestUpdateAppliedOnComplete(t *testing.T) {
	f := newUpdateFixture(t)
	before := f.state("demo-library", "hello")
	sid := f.create(f.itemID("demo-library", "hello"))
	next := []byte("new bytes for hello.txt, longer than before")
	if err := f.push(sid, "hello.txt", next); err != nil {
		t.Fatal(err)
	}
	info, err := f.lm.GetLibraryItemUpdateSessionFile(f.ctx, sid, "hello.txt")
	if err != nil || info.Status != "READY" || info.Size != int64(len(next)) || info.BytesTransferred != int64(len(next)) {
		t.Fatalf("file after PUT: %+v %v", info, err)
	}
	sameState(t, "before complete", f.state("demo-library", "hello"), before)
	if err := f.lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err != nil {
		t.Fatal(err)
	}
	sess, err := f.lm.GetLibraryItemUpdateSession(f.ctx, sid)
	if err != nil || sess.State != "DONE" {
		t.Fatalf("session %+v %v", sess, err)
	}
	after := f.state("demo-library", "hello")
	if after.version == before.version || after.files["hello.txt"] != 1 || !bytes.Equal(after.bytes["hello.txt"], next) || after.size != int64(len(next)) {
		t.Fatalf("after complete: version %s (was %s) files %v size %d", after.version, before.version, after.files, after.size)
	}
}

func TestUpdateEndedLeavesItem(t *testing.T) {
	f := newUpdateFixture(t)
	id := f.itemID("demo-library", "hello")
	before := f.state("demo-library", "hello")
	end := map[string]func(string) error{
		"cancel": func(sid string) error { return f.lm.CancelLibraryItemUpdateSession(f.ctx, sid) },
		"fail":   func(sid string) error { return f.lm.FailLibraryItemUpdateSession(f.ctx, sid) },
		"delete": func(sid string) error { return f.lm.DeleteLibraryItemUpdateSession(f.ctx, sid) },
	}
	for name, fn := range end {
		sid := f.create(id)
		if err := f.push(sid, "hello.txt", []byte("replaced")); err != nil {
			t.Fatal(err)
		}
		if err := f.push(sid, "other.txt", []byte("added")); err != nil {
			t.Fatal(err)
		}
		if err := fn(sid); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameState(t, name, f.state("demo-library", "hello"), before)
		if name != "delete" {
			if err := f.lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err == nil || !strings.Contains(err.Error(), "not_allowed_in_current_state") {
				t.Fatalf("complete after %s: %v", name, err)
			}
		}
	}
}

func TestUpdateOneActiveSessionPerItem(t *testing.T) {
	f := newUpdateFixture(t)
	id := f.itemID("demo-library", "hello")
	sid := f.create(id)
	_, err := f.lm.CreateLibraryItemUpdateSession(f.ctx, library.Session{LibraryItemID: id})
	if err == nil || !strings.Contains(err.Error(), "resource_busy") {
		t.Fatalf("second session: %v", err)
	}
	// Another item is not affected.
	f.create(f.itemID("demo-library", "multi"))
	if err := f.lm.CancelLibraryItemUpdateSession(f.ctx, sid); err != nil {
		t.Fatal(err)
	}
	f.create(id)
}

func TestUpdateReplaceAndRemove(t *testing.T) {
	f := newUpdateFixture(t)
	before := f.state("demo-library", "multi")
	sid := f.create(f.itemID("demo-library", "multi"))
	if err := f.push(sid, "a.bin", []byte("first try")); err != nil {
		t.Fatal(err)
	}
	if err := f.push(sid, "a.bin", []byte("second try")); err != nil { // redefined in the session
		t.Fatal(err)
	}
	if err := f.lm.RemoveLibraryItemUpdateSessionFile(f.ctx, sid, "b.bin"); err != nil {
		t.Fatal(err)
	}
	if err := f.lm.RemoveLibraryItemUpdateSessionFile(f.ctx, sid, "nosuch.bin"); err == nil || !strings.Contains(err.Error(), "invalid_argument") {
		t.Fatalf("remove of a missing file: %v", err)
	}
	list, err := f.lm.ListLibraryItemUpdateSessionFile(f.ctx, sid)
	if err != nil || len(list) != 2 {
		t.Fatalf("session files %+v %v", list, err)
	}
	if err := f.lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err != nil {
		t.Fatal(err)
	}
	after := f.state("demo-library", "multi")
	if fmt.Sprint(after.files) != "map[a.bin:1 readme.txt:1]" || string(after.bytes["a.bin"]) != "second try" {
		t.Fatalf("files %v, a.bin %q", after.files, after.bytes["a.bin"])
	}
	if !bytes.Equal(after.bytes["readme.txt"], before.bytes["readme.txt"]) {
		t.Fatal("readme.txt changed")
	}
	if after.size != int64(len("second try"))+100 {
		t.Fatalf("item size %d", after.size)
	}
}

func TestUpdateChecksumAndValidate(t *testing.T) {
	f := newUpdateFixture(t)
	before := f.state("demo-library", "hello")
	sid := f.create(f.itemID("demo-library", "hello"))
	b := []byte("checked bytes")
	good := sha256.Sum256(b)
	bad := sha256.Sum256([]byte("other bytes"))
	for _, c := range []struct {
		name, sum, status string
	}{{"good.txt", fmt.Sprintf("%x", good), "READY"}, {"bad.txt", fmt.Sprintf("%x", bad), "ERROR"}} {
		info, err := f.lm.AddLibraryItemFile(f.ctx, sid, library.UpdateFile{Name: c.name, SourceType: "PUSH",
			Checksum: &library.Checksum{Algorithm: "SHA256", Checksum: c.sum}})
		if err != nil {
			t.Fatal(err)
		}
		err = f.put(info, b)
		if (err != nil) != (c.status == "ERROR") {
			t.Fatalf("%s: PUT %v", c.name, err)
		}
		got, _ := f.lm.GetLibraryItemUpdateSessionFile(f.ctx, sid, c.name)
		if got.Status != c.status {
			t.Fatalf("%s: status %s, want %s", c.name, got.Status, c.status)
		}
	}
	if _, err := f.lm.AddLibraryItemFile(f.ctx, sid, library.UpdateFile{Name: "later.txt", SourceType: "PUSH"}); err != nil {
		t.Fatal(err)
	}
	v, err := f.lm.ValidateLibraryItemUpdateSessionFile(f.ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if !v.HasErrors || fmt.Sprint(v.MissingFiles) != "[later.txt]" || len(v.InvalidFiles) != 1 || v.InvalidFiles[0].Name != "bad.txt" {
		t.Fatalf("validate: %+v", v)
	}
	if err := f.lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err == nil || !strings.Contains(err.Error(), "not_allowed_in_current_state") {
		t.Fatalf("complete with errors: %v", err)
	}
	sameState(t, "failed complete", f.state("demo-library", "hello"), before)
	// Fixing the session makes it complete.
	if err := f.lm.RemoveLibraryItemUpdateSessionFile(f.ctx, sid, "bad.txt"); err != nil {
		t.Fatal(err)
	}
	if err := f.push(sid, "later.txt", []byte("now")); err != nil {
		t.Fatal(err)
	}
	if err := f.lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err != nil {
		t.Fatal(err)
	}
	if got := f.state("demo-library", "hello").files; fmt.Sprint(got) != "map[good.txt:1 hello.txt:1 later.txt:1]" {
		t.Fatalf("files %v", got)
	}
}

const testOVF = `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:href="disk1.vmdk" ovf:id="file1"/>
  </References>
  <VirtualSystem ovf:id="vm"/>
</Envelope>`

func TestUpdateValidatesOVFReferences(t *testing.T) {
	f := newUpdateFixture(t)
	lm := f.lm
	lib, _ := lm.GetLibraryByName(f.ctx, "demo-library")
	id, err := lm.CreateLibraryItem(f.ctx, library.Item{Name: "tmpl", LibraryID: lib.ID, Type: "ovf"})
	if err != nil {
		t.Fatal(err)
	}
	sid := f.create(id)
	if err := f.push(sid, "tmpl.ovf", []byte(testOVF)); err != nil {
		t.Fatal(err)
	}
	v, err := lm.ValidateLibraryItemUpdateSessionFile(f.ctx, sid)
	if err != nil || fmt.Sprint(v.MissingFiles) != "[disk1.vmdk]" {
		t.Fatalf("validate %+v %v", v, err)
	}
	if err := lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err == nil {
		t.Fatal("complete without the referenced disk succeeded")
	}
	if err := f.push(sid, "disk1.vmdk", []byte("not really a disk")); err != nil {
		t.Fatal(err)
	}
	if err := lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err != nil {
		t.Fatal(err)
	}
	if got := f.state("demo-library", "tmpl"); got.files["disk1.vmdk"] != 1 || string(got.bytes["disk1.vmdk"]) != "not really a disk" {
		t.Fatalf("after complete: %v", got.files)
	}
}

func TestUpdateFaults(t *testing.T) {
	f := newUpdateFixture(t)
	id := f.itemID("demo-library", "hello")
	before := f.state("demo-library", "hello")
	next := bytes.Repeat([]byte("x"), 1<<20)
	for _, step := range []string{FailCreate, FailAdd, FailPut, FailValidate, FailComplete, FailApply} {
		f.s.Updates.FailNext(step)
		err := func() error {
			sid, err := f.lm.CreateLibraryItemUpdateSession(f.ctx, library.Session{LibraryItemID: id})
			if err != nil {
				return err
			}
			// A client cleans up after a failure; the item must not care.
			defer f.lm.CancelLibraryItemUpdateSession(f.ctx, sid)
			if err := f.push(sid, "hello.txt", next); err != nil {
				return err
			}
			if _, err := f.lm.ValidateLibraryItemUpdateSessionFile(f.ctx, sid); err != nil {
				return err
			}
			if err := f.lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err != nil {
				return err
			}
			return f.lm.WaitOnLibraryItemUpdateSession(f.ctx, sid, 0, nil)
		}()
		if err == nil {
			t.Fatalf("%s: injected failure not seen", step)
		}
		t.Logf("%s: %v", step, err)
		sameState(t, step, f.state("demo-library", "hello"), before)
		if ids := f.s.Updates.Active(id); len(ids) != 0 {
			t.Fatalf("%s: sessions left active: %v", step, ids)
		}
	}
}

func TestUpdatePutResetAfterBytes(t *testing.T) {
	f := newUpdateFixture(t)
	sid := f.create(f.itemID("demo-library", "hello"))
	f.s.Updates.FailPutAfter(1000)
	f.s.Updates.FailNext(FailPut)
	b := bytes.Repeat([]byte("y"), 4<<20)
	err := f.push(sid, "hello.txt", b)
	if err == nil {
		t.Fatal("PUT survived a reset")
	}
	info, _ := f.lm.GetLibraryItemUpdateSessionFile(f.ctx, sid, "hello.txt")
	if info.Status != "ERROR" {
		t.Fatalf("status %s after reset", info.Status)
	}
	// Adding the file again gives a fresh endpoint; the session can still succeed.
	if err := f.push(sid, "hello.txt", b); err != nil {
		t.Fatal(err)
	}
	if err := f.lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err != nil {
		t.Fatal(err)
	}
	if got := f.state("demo-library", "hello"); !bytes.Equal(got.bytes["hello.txt"], b) {
		t.Fatal("retried upload did not land")
	}
}

func TestUpdateDonePollsAndOldReaders(t *testing.T) {
	f := newUpdateFixture(t)
	f.s.Updates.SetDonePolls(2)
	id := f.itemID("demo-library", "hello")
	old := f.state("demo-library", "hello").bytes["hello.txt"]

	// A download session opened before the commit.
	dsid, err := f.lm.CreateLibraryItemDownloadSession(f.ctx, library.Session{LibraryItemID: id})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.lm.PrepareLibraryItemDownloadSessionFile(f.ctx, dsid, "hello.txt"); err != nil {
		t.Fatal(err)
	}

	sid := f.create(id)
	if err := f.push(sid, "hello.txt", []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	if err := f.lm.CompleteLibraryItemUpdateSession(f.ctx, sid); err != nil {
		t.Fatal(err)
	}
	var states []string
	for range 3 {
		s, err := f.lm.GetLibraryItemUpdateSession(f.ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, s.State)
	}
	if fmt.Sprint(states) != "[ACTIVE ACTIVE DONE]" {
		t.Fatalf("states %v", states)
	}

	var info *library.DownloadFile
	for range 5 {
		if info, err = f.lm.GetLibraryItemDownloadSessionFile(f.ctx, dsid, "hello.txt"); err != nil {
			t.Fatal(err)
		}
		if info.Status == "PREPARED" {
			break
		}
	}
	u, _ := soap.ParseURL(info.DownloadEndpoint.URI)
	p := soap.DefaultDownload
	r, _, err := f.rc.Download(f.ctx, u, &p)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, old) {
		t.Fatalf("old download session read %q, want the old bytes", got)
	}
	if now := f.state("demo-library", "hello").bytes["hello.txt"]; string(now) != "fresh" {
		t.Fatalf("new session read %q", now)
	}
}

// A session left active by a client that went away expires, freeing the item.
func TestUpdateSessionExpires(t *testing.T) {
	f := newUpdateFixture(t)
	f.s.Updates.SetExpiry(time.Second) // shorter lapses mid-test under -race load
	id := f.itemID("demo-library", "hello")
	before := f.state("demo-library", "hello")
	sid := f.create(id)
	if err := f.push(sid, "hello.txt", []byte("abandoned")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.lm.CreateLibraryItemUpdateSession(f.ctx, library.Session{LibraryItemID: id}); err == nil {
		t.Fatal("second session while the first is fresh")
	}
	time.Sleep(1500 * time.Millisecond)
	f.create(id)
	s, err := f.lm.GetLibraryItemUpdateSession(f.ctx, sid)
	if err != nil || s.State != "ERROR" {
		t.Fatalf("expired session: %+v %v", s, err)
	}
	sameState(t, "expired", f.state("demo-library", "hello"), before)
}

// Injected failures of fail and cancel leave the session ACTIVE; once
// cleared, both work again.
func TestUpdateSessionFailCancelFaults(t *testing.T) {
	f := newUpdateFixture(t)
	id := f.itemID("demo-library", "hello")
	sid := f.create(id)
	f.s.Updates.FailNext(FailFail)
	f.s.Updates.FailNext(FailCancel)
	if err := f.lm.FailLibraryItemUpdateSession(f.ctx, sid); err == nil {
		t.Fatal("fail succeeded despite the fault")
	}
	if err := f.lm.CancelLibraryItemUpdateSession(f.ctx, sid); err == nil {
		t.Fatal("cancel succeeded despite the fault")
	}
	if a := f.s.Updates.Active(id); len(a) != 1 {
		t.Fatalf("active: %v", a)
	}
	f.s.Updates.FailNext(FailCancel)
	f.s.Updates.ClearFaults()
	if err := f.lm.CancelLibraryItemUpdateSession(f.ctx, sid); err != nil {
		t.Fatalf("cancel after ClearFaults: %v", err)
	}
	if a := f.s.Updates.Active(id); len(a) != 0 {
		t.Fatalf("active after cancel: %v", a)
	}
}

// With strict expiry a transfer in flight is no activity: a session whose
// PUT outlasts the idle time expires and the PUT is refused; keep-alive
// calls during it keep the session.
func TestUpdateSessionStrictExpiry(t *testing.T) {
	f := newUpdateFixture(t)
	f.s.Updates.SetExpiry(time.Second) // shorter lapses between keep-alives under -race load
	f.s.Updates.SetStrictExpiry(true)
	f.s.Updates.SetPutDelay(2 * time.Second)
	defer f.s.Updates.SetPutDelay(0)
	id := f.itemID("demo-library", "hello")
	sid := f.create(id)
	if err := f.push(sid, "hello.txt", []byte("late")); err == nil {
		t.Fatal("PUT outlasting the expiry succeeded")
	}
	if s, err := f.lm.GetLibraryItemUpdateSession(f.ctx, sid); err != nil || s.State != "ERROR" {
		t.Fatalf("session: %+v %v", s, err)
	}
	sid = f.create(id)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
				_ = f.lm.KeepAliveLibraryItemUpdateSession(f.ctx, sid)
			}
		}
	}()
	err := f.push(sid, "hello.txt", []byte("kept"))
	close(stop)
	if err != nil {
		t.Fatalf("PUT with keep-alive: %v", err)
	}
	if f.s.Updates.KeepAlives() == 0 {
		t.Fatal("no keep-alive counted")
	}
}

// A stalled PUT takes half its body and stops reading (the client has to
// give up by itself) for the stall time; the file is then in ERROR.
func TestUpdateSessionStalledPut(t *testing.T) {
	f := newUpdateFixture(t)
	id := f.itemID("demo-library", "hello")
	sid := f.create(id)
	f.s.Updates.SetStall(2 * time.Second)
	f.s.Updates.FailNext(StallPut)
	b := bytes.Repeat([]byte("x"), 8<<20)
	ctx, cancel := context.WithTimeout(f.ctx, time.Second)
	defer cancel()
	sum := sha1.Sum(b)
	info, err := f.lm.AddLibraryItemFile(f.ctx, sid, library.UpdateFile{
		Name: "hello.txt", SourceType: "PUSH", Size: int64(len(b)),
		Checksum: &library.Checksum{Algorithm: "SHA1", Checksum: fmt.Sprintf("%x", sum)},
	})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := soap.ParseURL(info.UploadEndpoint.URI)
	p := soap.DefaultUpload
	p.ContentLength = int64(len(b))
	start := time.Now()
	if err := f.rc.Upload(ctx, io.NopCloser(bytes.NewReader(b)), u, &p); err == nil {
		t.Fatal("stalled PUT succeeded")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("client gave up after %v", took)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := f.lm.GetLibraryItemUpdateSessionFile(f.ctx, sid, "hello.txt")
		if err == nil && fi.Status == "ERROR" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file after the stall: %+v %v", fi, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
