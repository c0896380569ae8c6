package library

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vapi/library"

	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/test/sim"
)

// A PUT whose body the server stops reading fails within about the
// progress deadline (not a multiple of it), names the stall, and leaves no
// session active.
func TestCommitPutStall(t *testing.T) {
	f := newWriteFixture(t)
	f.w.Stall = time.Second
	id := f.itemID("demo-library", "hello")
	before := f.snapshot(id)
	f.s.Updates.FailNext(sim.StallPut)
	start := time.Now()
	err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", pattern(32<<20, 9))}, nil)
	took := time.Since(start)
	var be *remote.Error
	if !errors.As(err, &be) || be.Call != "PUT" || !strings.Contains(be.Fault, "no data received") {
		t.Fatalf("stalled PUT: %v", err)
	}
	if took > 8*time.Second {
		t.Fatalf("stalled PUT failed after %v with a 1s deadline", took)
	}
	t.Logf("failed after %v: %v", took.Round(time.Millisecond), err)
	if !f.snapshot(id).same(before) {
		t.Fatal("item changed")
	}
	if a := f.s.Updates.Active(id); len(a) != 0 {
		t.Fatalf("session left active: %v", a)
	}
}

// A PUT that is reset, or answered 503, is tried again in the same
// session, and the commit succeeds.
func TestCommitPutRetried(t *testing.T) {
	f := newWriteFixture(t)
	id := f.itemID("demo-library", "hello")
	for i, step := range []string{sim.FailPutOnce, sim.FailPut503} {
		f.s.Updates.FailNext(step)
		want := pattern(3<<20, byte(20+i))
		if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", want)}, nil); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if got := f.snapshot(id).bytes["hello.txt"]; string(got) != string(want) {
			t.Fatalf("%s: %d bytes on the server, want %d", step, len(got), len(want))
		}
	}
	// A PUT that keeps failing gives up after PutAttempts, saying so.
	f.s.Updates.FailNext(sim.FailPut)
	err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", pattern(1<<20, 30))}, nil)
	if err == nil || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("PUT failing every time: %v", err)
	}
}

// When the failed commit's fail and cancel calls fail too, the session is
// remembered and the next commit of the item ends it first, so the item is
// never locked out.
func TestCommitEndsLeftSession(t *testing.T) {
	f := newWriteFixture(t)
	f.w.Stall = time.Second // end() retries for about max(Stall, 3s)
	id := f.itemID("demo-library", "hello")
	f.s.Updates.FailNext(sim.FailPut)
	for range 1000 {
		f.s.Updates.FailNext(sim.FailFail)
		f.s.Updates.FailNext(sim.FailCancel)
	}
	if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", pattern(1<<20, 40))}, nil); err == nil {
		t.Fatal("commit succeeded")
	}
	if a := f.s.Updates.Active(id); len(a) != 1 {
		t.Fatalf("want the session left active (fail and cancel refused), got %v", a)
	}
	f.s.Updates.ClearFaults()
	want := pattern(1<<20, 41)
	if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", want)}, nil); err != nil {
		t.Fatalf("the next commit: %v", err)
	}
	if got := f.snapshot(id).bytes["hello.txt"]; string(got) != string(want) {
		t.Fatal("the next commit did not land")
	}
	if a := f.s.Updates.Active(id); len(a) != 0 {
		t.Fatalf("sessions active: %v", a)
	}
}

// A commit that takes longer than the server's idle expiry survives: its
// session is kept alive (the simulator here does not count a transfer in
// flight as activity). The expiry is 2 s, not less: a 400 ms one expired
// before the first keep-alive under CI's parallel -race load.
func TestCommitKeepsSessionAlive(t *testing.T) {
	f := newWriteFixture(t)
	id := f.itemID("demo-library", "hello")
	f.s.Updates.SetExpiry(2 * time.Second)
	f.s.Updates.SetStrictExpiry(true)
	f.s.Updates.SetPutDelay(4 * time.Second)
	want := pattern(1<<20, 50)
	if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", want)}, nil); err != nil {
		t.Fatalf("slow commit: %v", err)
	}
	if n := f.s.Updates.KeepAlives(); n == 0 {
		t.Fatal("no keep-alive sent")
	}
	f.s.Updates.SetPutDelay(0)
	if got := f.snapshot(id).bytes["hello.txt"]; string(got) != string(want) {
		t.Fatal("slow commit did not land")
	}
}

// A keep-alive that cannot learn the session's expiry (its get fails) still
// keeps the session alive through a commit that outlasts the expiry.
func TestCommitKeepsSessionAliveWithoutItsExpiry(t *testing.T) {
	f := newWriteFixture(t)
	id := f.itemID("demo-library", "hello")
	f.s.Updates.SetExpiry(2 * time.Second)
	f.s.Updates.SetStrictExpiry(true)
	f.s.Updates.SetPutDelay(4 * time.Second)
	f.s.Updates.FailNext(sim.FailGet)
	want := pattern(1<<20, 51)
	if err := f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", want)}, nil); err != nil {
		t.Fatalf("slow commit: %v", err)
	}
	f.s.Updates.SetPutDelay(0)
	if got := f.snapshot(id).bytes["hello.txt"]; string(got) != string(want) {
		t.Fatal("slow commit did not land")
	}
}

// TrackSessions ends the sessions whose records a dead mount left (an
// active one, and one that ended meanwhile) and which the cache dir's owner
// moved into this mount's folder, and records its own sessions until they
// end. (Which folders are a dead mount's is the owner's: cachedir_test.go.)
func TestTrackSessionsEndsLeftOnes(t *testing.T) {
	f := newWriteFixture(t)
	id := f.itemID("demo-library", "hello")
	id2 := f.itemID("demo-library", "multi")
	dir := filepath.Join(t.TempDir(), "sessions", "mount-own")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	active, err := f.lm.CreateLibraryItemUpdateSession(f.ctx, library.Session{LibraryItemID: id})
	if err != nil {
		t.Fatal(err)
	}
	ended, err := f.lm.CreateLibraryItemUpdateSession(f.ctx, library.Session{LibraryItemID: id2})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.lm.CancelLibraryItemUpdateSession(f.ctx, ended); err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{active, ended} {
		if err := os.WriteFile(filepath.Join(dir, sid), []byte(id+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.w.TrackSessions(f.ctx, dir); err != nil {
		t.Fatal(err)
	}
	defer f.w.Close()
	if s, err := f.lm.GetLibraryItemUpdateSession(f.ctx, active); err != nil || s.State == "ACTIVE" {
		t.Fatalf("the dead mount's session: %+v %v", s, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("the dead mount's records are still there: %v", left)
	}
	// Our own sessions: recorded while open, gone when ended.
	f.s.Updates.SetPutDelay(time.Second)
	done := make(chan error, 1)
	go func() { done <- f.w.Commit(f.ctx, id, []remote.Staged{f.stage("hello.txt", pattern(1<<20, 60))}, nil) }()
	var own []string
	for range 100 {
		if own, _ = filepath.Glob(filepath.Join(dir, "*")); len(own) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(own) != 1 {
		t.Fatalf("own session not recorded: %v", own)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.s.Updates.SetPutDelay(0)
	if _, err := os.Stat(own[0]); !os.IsNotExist(err) {
		t.Fatalf("record of an ended session kept: %v", err)
	}
}
