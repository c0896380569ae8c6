package test

// Commit robustness on real mounts: uploads have a progress deadline, a
// writer blocked in close() on a commit stays killable, update sessions are
// always ended (even when fail/cancel fail, even when the mount is killed),
// kept alive while a commit runs, and PUTs are retried.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/vapi/library"

	"github.com/vspherefs/vspherefs/test/sim"
)

// inSyscall says whether process pid is blocked in syscall number nr.
func inSyscall(pid, nr int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 0 && f[0] == strconv.Itoa(nr)
}

// logValue is the value of key= in a log line ("" if absent).
func logValue(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if j := strings.Index(v[1:], `"`); j >= 0 {
			return v[1 : j+1]
		}
	}
	return strings.Fields(v)[0]
}

// waitLine waits up to d for a log line holding every text, and returns it.
func waitLine(m *Mount, d time.Duration, text ...string) string {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(m.Log(), "\n") {
			all := true
			for _, t := range text {
				all = all && strings.Contains(l, t)
			}
			if all {
				return l
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ""
}

// TestCommitStallKillable: when the server stops reading a PUT, a writer
// blocked in close() is killed by SIGKILL at once, the commit fails on its
// own within about --timeout with one log line and the bytes in recovery,
// no update session stays active, and the mount unmounts cleanly. Library
// and guest trees.
func TestCommitStallKillable(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	// Long enough that a writer which only dies when the commit fails
	// (instead of at once) is caught by the 1.5s check below.
	const timeout = 5 * time.Second
	m := mount(t, s, "--timeout", timeout.String(), "--guest-login", sim.GuestLoginString())
	staged := mount(t, s, "--timeout", timeout.String(), "--upload", "staged")
	id := itemID(t, s, "demo-library", "hello")
	for _, c := range []struct {
		name, dst, logged string
		on                *Mount
		size              int
		inject            func()
	}{
		// Staged whole: the PUT starts at close and stalls halfway.
		{"library", staged.Path("libraries", "demo-library", "hello", "stall.bin"), "hello/stall.bin", staged, 32 << 20, func() { s.Updates.SetStallAfter(-1); s.Updates.FailNext(sim.StallPut) }},
		// Streamed, every byte still here: the PUT stalls while cp is in close.
		{"library-streamed", m.Path("libraries", "demo-library", "hello", "stall2.bin"), "hello/stall2.bin", m, 6 << 20, func() { s.Updates.SetStallAfter(0); s.Updates.FailNext(sim.StallPut) }},
		{"guest", m.Path("vms", guestVM, "tmp", "stall.bin"), "/tmp/stall.bin", m, 32 << 20, func() { s.Guest.StallNextPut(time.Minute) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := randBytes(11, c.size)
			src := filepath.Join(t.TempDir(), "src.bin")
			if err := os.WriteFile(src, data, 0o644); err != nil {
				t.Fatal(err)
			}
			c.inject()
			cmd := exec.Command("cp", src, c.dst)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			deadline := time.Now().Add(30 * time.Second)
			for !inSyscall(cmd.Process.Pid, syscall.SYS_CLOSE) {
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					t.Fatalf("cp never blocked in close()\n%s", c.on.Log())
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // the PUT is under way, and stalled
			killed := time.Now()
			_ = cmd.Process.Kill()
			select {
			case <-exited:
				t.Logf("writer gone %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
			case <-time.After(1500 * time.Millisecond):
				t.Fatalf("writer blocked in close() survived SIGKILL for 1.5s\n%s", m.Log())
			}
			// The commit fails by itself, within about the deadline.
			line := waitLine(c.on, 3*timeout, c.logged, "no data received", "PUT")
			if line == "" {
				t.Fatalf("no log line for the stalled commit of %s\n%s", c.logged, c.on.Log())
			}
			t.Logf("failed %v after the kill: %s", time.Since(killed).Round(time.Millisecond), line)
			rec := logValue(line, "recovery")
			if rec == "" {
				rec = logValue(line, "kept")
			}
			if got, err := os.ReadFile(rec); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("recovered %q: %d bytes, %v", rec, len(got), err)
			}
			if a := s.Updates.Active(id); len(a) != 0 {
				t.Fatalf("sessions left active: %v", a)
			}
		})
	}
	staged.Unmount(t)
	m.Unmount(t)
}

// TestCommitEndsSessionsWhenFailCancelFail: a failed commit whose fail and
// cancel calls fail too does not lock the item: the next write works.
func TestCommitEndsSessionsWhenFailCancelFail(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--timeout", "2s")
	id := itemID(t, s, "demo-library", "hello")
	p := m.Path("libraries", "demo-library", "hello", "hello.txt")
	s.Updates.FailNext(sim.FailPut)
	for range 1000 {
		s.Updates.FailNext(sim.FailFail)
		s.Updates.FailNext(sim.FailCancel)
	}
	if err := os.WriteFile(p, randBytes(1, 1<<20), 0o644); !errors.Is(err, syscall.EIO) {
		t.Fatalf("failed commit: %v, want EIO", err)
	}
	if a := s.Updates.Active(id); len(a) != 1 {
		t.Fatalf("want the session left active by the refused fail/cancel, got %v", a)
	}
	s.Updates.ClearFaults()
	want := randBytes(2, 1<<20)
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatalf("the next write to the item: %v\n%s", err, m.Log())
	}
	if got, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("server has %d bytes, %v", len(got), err)
	}
	if a := s.Updates.Active(id); len(a) != 0 {
		t.Fatalf("sessions active: %v", a)
	}
}

// TestCommitSlowSurvivesExpiry: a commit that takes longer than the
// server's idle expiry of update sessions succeeds (keep-alive), on a
// simulator where a transfer in flight is no activity.
func TestCommitSlowSurvivesExpiry(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--timeout", "10s")
	// Keep-alives come every third of the expiry: 2 s leaves them room on
	// a loaded machine (500 ms did not, under -race); the PUT outlasts it.
	s.Updates.SetExpiry(2 * time.Second)
	s.Updates.SetStrictExpiry(true)
	s.Updates.SetPutDelay(4 * time.Second)
	want := randBytes(3, 1<<20)
	if err := os.WriteFile(m.Path("libraries", "demo-library", "hello", "slow.bin"), want, 0o644); err != nil {
		t.Fatalf("slow commit: %v\n%s", err, m.Log())
	}
	s.Updates.SetPutDelay(0)
	if got, err := s.Download(ctx(t), "demo-library", "hello", "slow.bin"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("server has %d bytes, %v", len(got), err)
	}
	if s.Updates.KeepAlives() == 0 {
		t.Fatal("no keep-alive")
	}
}

// TestKilledMountSessionEnded: kill -9 of the mount mid-commit leaves its
// update session ACTIVE; the next mount with that cache dir ends it (seen
// through govmomi's session list) and recovers the bytes.
func TestKilledMountSessionEnded(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	cacheDir := t.TempDir()
	m := mount(t, s, "--cache-dir", cacheDir)
	id := itemID(t, s, "demo-library", "hello")
	data := randBytes(4, 2<<20)
	src := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Updates.SetPutDelay(4 * time.Second)
	cmd := exec.Command("cp", src, m.Path("libraries", "demo-library", "hello", "killed.bin"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var sids []string
	for sids = s.Updates.Active(id); len(sids) == 0; sids = s.Updates.Active(id) {
		if time.Now().After(deadline) {
			t.Fatalf("no session\n%s", m.Log())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The mount records the session once create has answered: kill it only
	// after that, as a kill before it leaves nothing to find.
	for {
		if recs, _ := filepath.Glob(filepath.Join(cacheDir, "sessions", "*", sids[0])); len(recs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s never recorded under %s/sessions\n%s", sids[0], cacheDir, m.Log())
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = m.cmd.Process.Kill()
	<-m.done
	_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
	_ = cmd.Wait()
	s.Updates.SetPutDelay(0)
	if a := s.Updates.Active(id); len(a) != 1 {
		t.Fatalf("after kill -9: active sessions %v", a)
	}

	m2 := mount(t, s, "--cache-dir", cacheDir)
	c := ctx(t)
	_, rc, err := s.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	lm := library.NewManager(rc)
	ids, err := lm.ListLibraryItemUpdateSession(c)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sid := range ids {
		ss, err := lm.GetLibraryItemUpdateSession(c, sid)
		if err != nil {
			t.Fatal(err)
		}
		if ss.LibraryItemID == id && ss.State == "ACTIVE" {
			t.Fatalf("session %s still ACTIVE after the next mount", sid)
		}
		if sid == sids[0] {
			found = true
			if ss.State != "CANCELED" {
				t.Errorf("the killed mount's session is %s, want CANCELED", ss.State)
			}
		}
	}
	if !found {
		t.Fatalf("session %s not in the list %v", sids[0], ids)
	}
	if waitLine(m2, 5*time.Second, "previous mount left open", sids[0]) == "" {
		t.Errorf("no log line for the ended session\n%s", m2.Log())
	}
	var rescued []string
	_ = filepath.WalkDir(filepath.Join(cacheDir, "recovery"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Equal(b, data) {
				rescued = append(rescued, p)
			}
		}
		return nil
	})
	if len(rescued) == 0 {
		t.Fatalf("the killed mount's bytes are not in recovery\n%s", m2.Log())
	}
	want := randBytes(5, 1<<20)
	if err := os.WriteFile(m2.Path("libraries", "demo-library", "hello", "after.bin"), want, 0o644); err != nil {
		t.Fatalf("write after the remount: %v\n%s", err, m2.Log())
	}
	if entries, _ := os.ReadDir(filepath.Join(cacheDir, "sessions")); len(entries) != 1 {
		t.Errorf("session records: %v", entries)
	}
}

// TestVMsPutRetried: a guest PUT that is reset, or answered 503, is tried
// again with a fresh transfer URL, and the write succeeds.
func TestVMsPutRetried(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	for i, inject := range []func(){
		func() { s.Guest.ResetNextPut(1000) },
		func() { s.Guest.FailNextPutStatus(503) },
	} {
		inject()
		want := randBytes(uint64(10+i), 300000)
		name := fmt.Sprintf("retried-%d.bin", i)
		if err := os.WriteFile(m.Path("vms", guestVM, "tmp", name), want, 0o644); err != nil {
			t.Fatalf("write %d: %v\n%s", i, err, m.Log())
		}
		if got, err := os.ReadFile(filepath.Join(guestHostDir(t, s, guestVM), "tmp", name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("guest has %d bytes, %v", len(got), err)
		}
	}
	if !m.WaitLog("retrying with a new transfer URL") {
		t.Fatalf("no retry logged\n%s", m.Log())
	}
}

// TestUnmountDuringStalledCommit: unmounting while a commit is stalled
// (its writer killed in close()) waits no longer than about the deadline;
// the commit that failed meanwhile is listed, the exit status is 1, and the
// bytes are in recovery. Staged (the PUT starts at close), streamed with
// every byte still here, and streamed after its start was sent and dropped
// (then recovery holds the rest, and INDEX says from which offset).
func TestUnmountDuringStalledCommit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		args    []string
		size    int
		stallAt int64 // bytes the server reads before it stops (-1: half of a staged body)
		partial bool  // the start was dropped: recovery holds the rest
	}{
		{"staged", []string{"--upload", "staged"}, 32 << 20, -1, false},
		{"streamed", nil, 6 << 20, 0, false},
		{"streamed-dropped", nil, 32 << 20, 24 << 20, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := sim.StartT(t)
			const timeout = 2 * time.Second
			m := mount(t, s, append([]string{"--timeout", timeout.String()}, c.args...)...)
			data := randBytes(12, c.size)
			src := filepath.Join(t.TempDir(), "src.bin")
			if err := os.WriteFile(src, data, 0o644); err != nil {
				t.Fatal(err)
			}
			s.Updates.SetStallAfter(c.stallAt)
			s.Updates.FailNext(sim.StallPut)
			cmd := exec.Command("cp", src, m.Path("libraries", "demo-library", "hello", "stall.bin"))
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for !inSyscall(cmd.Process.Pid, syscall.SYS_CLOSE) {
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					t.Fatalf("cp never blocked in close()\n%s", m.Log())
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			start := time.Now()
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.done:
			case <-time.After(5 * timeout):
				t.Fatalf("no exit %v after SIGTERM with a stalled commit and a %v deadline", time.Since(start), timeout)
			}
			t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
			if mounted(m.Dir) {
				t.Fatal("still mounted")
			}
			// The commit failed during the unmount: listed, and the exit status says so.
			var ee *exec.ExitError
			if !errors.As(m.exitErr, &ee) || ee.ExitCode() != 1 || !strings.Contains(m.Log(), "could not be committed at unmount") {
				t.Fatalf("exit: %v\n%s", m.exitErr, m.Log())
			}
			// Which deadline ends the commit first, its PUT's (no data for
			// --timeout) or the unmount's (--timeout after the signal),
			// depends on the machine's load: either is one line naming
			// the PUT, the fault and the recovery.
			line := waitLine(m, time.Second, "stall.bin", "no data received", "call=PUT")
			if line == "" {
				line = waitLine(m, time.Second, "stall.bin", "unmount stopped waiting", "call=PUT")
			}
			if line == "" {
				t.Fatalf("no log line for the stalled commit\n%s", m.Log())
			}
			rec := logValue(line, "recovery")
			got, err := os.ReadFile(rec)
			if err != nil {
				t.Fatal(err)
			}
			e := indexEntry(t, m.CacheDir, rec)
			off, _ := e["offset"].(float64)
			reason, _ := e["reason"].(string)
			if c.partial != (off > 0) || c.partial != (logValue(line, "missing") != "") {
				t.Fatalf("recovery from offset %v (partial: %v); log: %s", off, c.partial, line)
			}
			if off > 0 && !strings.Contains(reason, "no longer here") {
				t.Fatalf("INDEX reason does not say the start is missing: %q", reason)
			}
			if !bytes.Equal(got, data[int(off):]) || e["size"] != float64(len(got)) {
				t.Fatalf("recovered %d bytes from offset %v (INDEX size %v), want the %d written from there", len(got), off, e["size"], len(data)-int(off))
			}
			if e["origin"] != "libraries/demo-library/hello/stall.bin" {
				t.Fatalf("INDEX origin %v", e["origin"])
			}
		})
	}
}

// TestSignalledCloseWaits: a signal the writer handles does not cut its
// close() short: the kernel interrupts the request, the writer is not dying,
// so close() returns the commit's outcome (0), not EINTR.
func TestSignalledCloseWaits(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	bin := filepath.Join(t.TempDir(), "sigclose")
	run(t, "go", "build", "-o", bin, "./testdata/sigclose")
	want := randBytes(13, 1<<20)
	s.Updates.SetPutDelay(2 * time.Second)
	defer s.Updates.SetPutDelay(0)
	var out bytes.Buffer
	cmd := exec.Command(bin, m.Path("libraries", "demo-library", "hello", "signalled.bin"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(want), &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	var tid int
	for tid = threadIn(cmd.Process.Pid, syscall.SYS_CLOSE); tid == 0; tid = threadIn(cmd.Process.Pid, syscall.SYS_CLOSE) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("never blocked in close(): %s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 5 { // to the thread in close(): the kernel interrupts its request
		_ = syscall.Tgkill(cmd.Process.Pid, tid, syscall.SIGUSR1)
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-exited:
		if err != nil || !strings.Contains(out.String(), "close: <nil>") {
			t.Fatalf("writer: %v\n%s\n%s", err, out.String(), m.Log())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("writer never returned from close()\n%s", out.String())
	}
	t.Logf("%s", strings.TrimSpace(out.String()))
	if got, err := s.Download(ctx(t), "demo-library", "hello", "signalled.bin"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("server has %d bytes, %v", len(got), err)
	}
}

// threadIn is a thread of process pid blocked in syscall nr, or 0.
func threadIn(pid, nr int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(task, "syscall"))
		if f := strings.Fields(string(b)); err == nil && len(f) > 0 && f[0] == strconv.Itoa(nr) {
			tid, _ := strconv.Atoi(filepath.Base(task))
			return tid
		}
	}
	return 0
}
