package test

// Library write semantics as tools and editors use them: the server changes
// at close and once; renames within an item; editor scratch files; per-file
// times; names refused at create.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vspherefs/vspherefs/test/sim"
)

// sessions counts the update sessions fn makes (completed and applied).
func sessions(s *sim.Server, fn func()) int64 {
	before := s.Updates.Completed()
	fn()
	return s.Updates.Completed() - before
}

// serverHas: the server's lib/item/name holds want.
func serverHas(t *testing.T, s *sim.Server, lib, item, name string, want []byte) {
	t.Helper()
	got, err := s.Download(ctx(t), lib, item, name)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s/%s/%s on the server: %q (%v), want %q", lib, item, name, trunc(got), err, trunc(want))
	}
}

func trunc(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func sh(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// TestTruncOpenChangesAtClose: open(O_TRUNC) changes nothing on the server
// until the last close; a writer's open-write-close is one update session,
// bash's dup'd descriptors included; a failed copy over a file leaves it.
func TestTruncOpenChangesAtClose(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	item := m.Path("libraries", "demo-library", "hello")
	p := filepath.Join(item, "hello.txt")
	old, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}

	// As bash does for `exec 3>f`: open, dup, close the original.
	n := sessions(s, func() {
		fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_TRUNC|syscall.O_CREAT, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fd3, err := syscall.Dup(fd)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Close(fd); err != nil {
			t.Fatal(err)
		}
		serverHas(t, s, "demo-library", "hello", "hello.txt", old) // open and a dup's close: nothing yet
		if _, err := syscall.Write(fd3, []byte("new bytes\n")); err != nil {
			t.Fatal(err)
		}
		serverHas(t, s, "demo-library", "hello", "hello.txt", old)
		if err := syscall.Close(fd3); err != nil {
			t.Fatal(err)
		}
	})
	serverHas(t, s, "demo-library", "hello", "hello.txt", []byte("new bytes\n"))
	if n != 1 {
		t.Fatalf("open(O_TRUNC), dup, write, close: %d sessions, want 1", n)
	}

	for _, c := range []struct{ script, want string }{
		{`echo one > hello.txt`, "one\n"},
		{`exec 3>hello.txt; echo a >&3; echo b >&3; exec 3>&-`, "a\nb\n"},
		{`{ echo x; echo y; } > hello.txt`, "x\ny\n"},
		{`: > hello.txt`, ""},
	} {
		n := sessions(s, func() { sh(t, item, c.script) })
		serverHas(t, s, "demo-library", "hello", "hello.txt", []byte(c.want))
		if n != 1 {
			t.Errorf("%s: %d sessions, want 1", c.script, n)
		}
	}

	// A copy over an existing file that fails leaves the server's file.
	want := []byte("kept through a failed copy\n")
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, randBytes(3, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Updates.FailPutAfter(1 << 20)
	s.Updates.FailNext(sim.FailPut)
	if out, err := exec.Command("cp", src, p).CombinedOutput(); err == nil {
		t.Fatalf("cp with a failing upload succeeded: %s", out)
	}
	serverHas(t, s, "demo-library", "hello", "hello.txt", want)
	if !m.WaitLog("call=PUT") {
		t.Fatalf("no log line for the failed copy:\n%s", m.Log())
	}
}

// TestRenamesInItem: a file renamed before or after its close is committed
// once, under its final name; renaming a committed file is one session that
// adds the new name and removes the old; sed -i, Python's atomic save,
// install and rsync save the right bytes with no temporary name reaching the
// server.
func TestRenamesInItem(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	item := m.Path("libraries", "demo-library", "multi")
	names := func() string { return strings.Join(serverFiles(t, s, "demo-library", "multi"), ",") }

	// Renamed while open, then closed.
	n := sessions(s, func() {
		f, err := os.Create(filepath.Join(item, "draft.txt"))
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("renamed while open\n")
		if err := os.Rename(filepath.Join(item, "draft.txt"), filepath.Join(item, "final.txt")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	})
	if n != 1 || names() != "a.bin,b.bin,final.txt,readme.txt" {
		t.Fatalf("renamed while open: %d sessions, files %s", n, names())
	}
	serverHas(t, s, "demo-library", "multi", "final.txt", []byte("renamed while open\n"))

	// A committed file renamed: one session; the bytes follow.
	a, err := s.Download(ctx(t), "demo-library", "multi", "a.bin")
	if err != nil {
		t.Fatal(err)
	}
	n = sessions(s, func() {
		if err := os.Rename(filepath.Join(item, "a.bin"), filepath.Join(item, "moved.bin")); err != nil {
			t.Fatal(err)
		}
	})
	if n != 1 || names() != "b.bin,final.txt,moved.bin,readme.txt" {
		t.Fatalf("rename of a committed file: %d sessions, files %s", n, names())
	}
	checkLanded(t, s, m, "demo-library", "multi", "moved.bin", a)
	if _, err := os.Stat(filepath.Join(item, "a.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old name after the rename: %v", err)
	}
	// Over an existing file, and refused with RENAME_NOREPLACE semantics by mv -n.
	n = sessions(s, func() { run(t, "mv", filepath.Join(item, "moved.bin"), filepath.Join(item, "b.bin")) })
	if n != 1 || names() != "b.bin,final.txt,readme.txt" {
		t.Fatalf("rename over a committed file: %d sessions, files %s", n, names())
	}
	serverHas(t, s, "demo-library", "multi", "b.bin", a)

	// sed -i: a temporary file, closed, renamed over the file: one session.
	if err := os.WriteFile(filepath.Join(item, "final.txt"), []byte("alpha beta\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n = sessions(s, func() { run(t, "sed", "-i", "s/alpha/gamma/", filepath.Join(item, "final.txt")) })
	serverHas(t, s, "demo-library", "multi", "final.txt", []byte("gamma beta\n"))
	if n != 1 || names() != "b.bin,final.txt,readme.txt" {
		t.Fatalf("sed -i: %d sessions, files %s", n, names())
	}

	// Python's atomic save: tempfile in the folder, then os.replace.
	py := `import os, sys, tempfile
d, name = sys.argv[1], sys.argv[2]
with tempfile.NamedTemporaryFile("w", dir=d, delete=False) as f:
    f.write("saved by python\n")
os.replace(f.name, os.path.join(d, name))`
	n = sessions(s, func() { run(t, "python3", "-c", py, item, "readme.txt") })
	serverHas(t, s, "demo-library", "multi", "readme.txt", []byte("saved by python\n"))
	if n != 1 || names() != "b.bin,final.txt,readme.txt" {
		t.Fatalf("python os.replace: %d sessions, files %s", n, names())
	}

	// install (unlink, create, chmod), and rsync of a changed file.
	src := filepath.Join(t.TempDir(), "tool.sh")
	os.WriteFile(src, []byte("#!/bin/sh\necho tool\n"), 0o755)
	run(t, "install", src, filepath.Join(item, "final.txt"))
	serverHas(t, s, "demo-library", "multi", "final.txt", []byte("#!/bin/sh\necho tool\n"))
	os.WriteFile(src, []byte("#!/bin/sh\necho tool v2\n"), 0o755)
	n = sessions(s, func() { run(t, "rsync", src, filepath.Join(item, "final.txt")) })
	serverHas(t, s, "demo-library", "multi", "final.txt", []byte("#!/bin/sh\necho tool v2\n"))
	if n != 1 || names() != "b.bin,final.txt,readme.txt" {
		t.Fatalf("rsync over a file: %d sessions, files %s", n, names())
	}
	if strings.Contains(m.Log(), "level=ERROR") {
		t.Fatalf("errors logged:\n%s", m.Log())
	}
}

// TestEditorFiles: vim with default settings saves the right bytes in one
// session without warning; swap, backup and probe files never reach the
// library, are visible while they exist and go on unlink.
func TestEditorFiles(t *testing.T) {
	if _, err := exec.LookPath("vim"); err != nil {
		t.Fatal("vim is needed for this test (Debian's vim)")
	}
	s := sim.StartT(t)
	m := mount(t, s)
	item := m.Path("libraries", "demo-library", "hello")
	p := filepath.Join(item, "notes.txt")
	if err := os.WriteFile(p, []byte("aaa\nbab\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	names := func() string { return strings.Join(serverFiles(t, s, "demo-library", "hello"), ",") }

	// vim skips backups under /tmp (backupskip), where tests mount: clear it
	// to get its whole default dance (4913 probe, rename to notes.txt~, write
	// notes.txt anew, remove the backup).
	for i, args := range [][]string{
		{"-Es", "-c", "%s/a/b/", "-c", "wq", p},
		{"-u", "DEFAULTS", "-i", "NONE", "-c", "set backupskip= backup", "-c", "%s/b/c/", "-c", "wq", p},
		{"-u", "DEFAULTS", "-i", "NONE", "-c", "set backupskip=", "-c", "%s/c/d/", "-c", "wq", p},
	} {
		var out []byte
		var err error
		n := sessions(s, func() {
			cmd := exec.Command("vim", args...)
			cmd.Dir = item
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "TERM=xterm")
			out, err = cmd.CombinedOutput()
		})
		if err != nil || strings.Contains(string(out), "changed") {
			t.Fatalf("vim %v: %v\n%s", args, err, out)
		}
		want := [][]byte{[]byte("baa\nbbb\n"), []byte("caa\ncbb\n"), []byte("daa\ndbb\n")}[i]
		serverHas(t, s, "demo-library", "hello", "notes.txt", want)
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("vim %v: the mount reads %q (%v)", args, got, err)
		}
		if n != 1 || names() != "hello.txt,notes.txt" {
			t.Fatalf("vim %v: %d sessions, server files %s", args, n, names())
		}
	}
	// The kept backup (set backup) is in the mount, not on the server.
	if b, err := os.ReadFile(filepath.Join(item, "notes.txt~")); err != nil || string(b) != "baa\nbbb\n" {
		t.Fatalf("vim's backup notes.txt~: %q, %v", b, err)
	}

	// A swap file a killed vim leaves: visible, local, gone on unlink.
	for _, scratch := range []string{".notes.txt.swp", ".notes.txt.swx", "notes.txt~", "4913", ".#notes.txt", "#notes.txt#"} {
		n := sessions(s, func() {
			if err := os.WriteFile(filepath.Join(item, scratch), []byte("scratch"), 0o600); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 || names() != "hello.txt,notes.txt" {
			t.Fatalf("%s: %d sessions, server files %s", scratch, n, names())
		}
		entries, _ := os.ReadDir(item)
		seen := false
		for _, e := range entries {
			seen = seen || e.Name() == scratch
		}
		if b, err := os.ReadFile(filepath.Join(item, scratch)); !seen || err != nil || string(b) != "scratch" {
			t.Fatalf("%s: listed %v, reads %q (%v)", scratch, seen, b, err)
		}
		if err := os.Remove(filepath.Join(item, scratch)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(item, scratch)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after unlink: %v", scratch, err)
		}
	}
	if strings.Contains(m.Log(), "level=ERROR") {
		t.Fatalf("errors logged:\n%s", m.Log())
	}
}

// waitTTL lets the attribute and entry caches (--ttl 1s) lapse.
func waitTTL() { time.Sleep(1100 * time.Millisecond) }

func lstat(t *testing.T, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func mtimeOf(st syscall.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec) }

// TestPerFileTimes: a commit of one file leaves the mtime and inode of the
// item's other files; a time the writer sets (touch -d, cp -p, rsync -a) is
// kept, across a remount with the same cache dir, so a second rsync -a
// sends nothing.
func TestPerFileTimes(t *testing.T) {
	s := sim.StartT(t)
	cacheDir := t.TempDir()
	m := mount(t, s, "--cache-dir", cacheDir)
	item := m.Path("libraries", "demo-library", "multi")
	a0, r0 := lstat(t, filepath.Join(item, "a.bin")), lstat(t, filepath.Join(item, "readme.txt"))
	time.Sleep(20 * time.Millisecond) // a later commit has a later item time
	if err := os.WriteFile(filepath.Join(item, "b.bin"), []byte("rewritten\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitTTL()
	for _, c := range []struct {
		name   string
		before syscall.Stat_t
	}{{"a.bin", a0}, {"readme.txt", r0}} {
		now := lstat(t, filepath.Join(item, c.name))
		if now.Ino != c.before.Ino || !mtimeOf(now).Equal(mtimeOf(c.before)) {
			t.Fatalf("%s after a commit of b.bin: ino %d mtime %v, was ino %d mtime %v", c.name, now.Ino, mtimeOf(now), c.before.Ino, mtimeOf(c.before))
		}
	}
	b := lstat(t, filepath.Join(item, "b.bin"))
	if b.Size != 10 || !mtimeOf(b).After(mtimeOf(a0)) {
		t.Fatalf("b.bin after its commit: size %d mtime %v (a.bin %v)", b.Size, mtimeOf(b), mtimeOf(a0))
	}

	// touch -d on a committed file: no session, the time is kept.
	set := time.Date(2001, 2, 3, 4, 5, 6, 123456789, time.UTC)
	if n := sessions(s, func() { run(t, "touch", "-d", set.Format(time.RFC3339Nano), filepath.Join(item, "a.bin")) }); n != 0 {
		t.Fatalf("touch -d made %d sessions", n)
	}
	// cp -p of a new file, and of one over an existing file.
	src := t.TempDir()
	old := time.Date(2002, 3, 4, 5, 6, 7, 0, time.UTC)
	for i, n := range []string{"one.txt", "two.bin", "readme.txt"} {
		p := filepath.Join(src, n)
		os.WriteFile(p, randBytes(uint64(i), 1000*(i+1)), 0o644)
		os.Chtimes(p, old, old.Add(time.Duration(i)*time.Hour))
	}
	run(t, "cp", "-p", filepath.Join(src, "one.txt"), filepath.Join(item, "one.txt"))
	waitTTL()
	if got := mtimeOf(lstat(t, filepath.Join(item, "a.bin"))); !got.Equal(set) {
		t.Fatalf("a.bin after touch -d: %v, want %v", got, set)
	}
	if got := mtimeOf(lstat(t, filepath.Join(item, "one.txt"))); !got.Equal(old) {
		t.Fatalf("one.txt after cp -p: %v, want %v", got, old)
	}

	// rsync -a twice: the second sends nothing.
	dst := m.Path("libraries", "demo-library", "synced")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "rsync", "-a", src+"/", dst+"/")
	var out string
	n := sessions(s, func() { out = run(t, "rsync", "-a", "--stats", src+"/", dst+"/") })
	if n != 0 || !strings.Contains(out, "Number of regular files transferred: 0") {
		t.Fatalf("second rsync -a: %d sessions\n%s", n, out)
	}

	// Kept across a remount with the same cache dir.
	m.Unmount(t)
	m2 := mount(t, s, "--cache-dir", cacheDir)
	if got := mtimeOf(lstat(t, m2.Path("libraries", "demo-library", "multi", "a.bin"))); !got.Equal(set) {
		t.Fatalf("a.bin after a remount: %v, want %v", got, set)
	}
	n = sessions(s, func() {
		out = run(t, "rsync", "-a", "--stats", src+"/", m2.Path("libraries", "demo-library", "synced")+"/")
	})
	if n != 0 || !strings.Contains(out, "Number of regular files transferred: 0") {
		t.Fatalf("rsync -a after a remount: %d sessions\n%s", n, out)
	}
}

// TestNamesRefusedAtCreate: a name over 255 bytes, or one the API refuses,
// is refused at open(O_CREAT), mkdir and rename, before any byte is
// accepted, in libraries and in guests.
func TestNamesRefusedAtCreate(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	lib := m.Path("libraries", "demo-library")
	item := filepath.Join(lib, "hello")
	long := strings.Repeat("n", 256)
	n := sessions(s, func() {
		for _, c := range []struct {
			what string
			err  error
			want syscall.Errno
		}{
			{"create", os.WriteFile(filepath.Join(item, long), []byte("x"), 0o644), syscall.ENAMETOOLONG},
			{"mkdir item", os.Mkdir(filepath.Join(lib, long), 0o755), syscall.ENAMETOOLONG},
			{"mkdir library", os.Mkdir(m.Path("libraries", long), 0o755), syscall.ENAMETOOLONG},
			{"rename", os.Rename(filepath.Join(item, "hello.txt"), filepath.Join(item, long)), syscall.ENAMETOOLONG},
			{"rename item", os.Rename(item, filepath.Join(lib, long)), syscall.ENAMETOOLONG},
			{"backslash", os.WriteFile(filepath.Join(item, `a\b`), []byte("x"), 0o644), syscall.EINVAL},
			{"dot dot", os.WriteFile(filepath.Join(item, "a..b"), []byte("x"), 0o644), syscall.EINVAL},
			{"slash", os.WriteFile(filepath.Join(item, "a%2Fb"), []byte("x"), 0o644), syscall.EINVAL},
			{"guest create", os.WriteFile(m.Path("vms", guestVM, "tmp", long), []byte("x"), 0o644), syscall.ENAMETOOLONG},
			{"guest mkdir", os.Mkdir(m.Path("vms", guestVM, "tmp", long), 0o755), syscall.ENAMETOOLONG},
		} {
			if !errors.Is(c.err, c.want) {
				t.Errorf("%s: %v, want %v", c.what, c.err, c.want)
			}
		}
	})
	if n != 0 {
		t.Errorf("%d sessions for refused names", n)
	}
	ok := strings.Repeat("k", 255)
	if err := os.WriteFile(filepath.Join(item, ok), []byte("255 bytes is fine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkLanded(t, s, m, "demo-library", "hello", ok, []byte("255 bytes is fine\n"))
	if strings.Contains(m.Log(), "level=ERROR") {
		t.Fatalf("refusals logged as errors:\n%s", m.Log())
	}
}

// TestHeldCommitsLater: a file renamed to a scratch name leaves the server
// with no other change to the item after the hold time (an editor that
// renames its file away and never writes it again), and a closed file with
// a temporary name that is never renamed is committed under its own name
// then.
func TestHeldCommitsLater(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--test-hold-timeout", "1s")
	item := m.Path("libraries", "demo-library", "hello")
	old, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(item, "hello.txt"), filepath.Join(item, "hello.txt~")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(item, "hello.txt~")); err != nil || !bytes.Equal(b, old) {
		t.Fatalf("hello.txt~: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(item, "hello.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("hello.txt after its rename: %v", err)
	}
	if got := serverFiles(t, s, "demo-library", "hello"); strings.Join(got, ",") != "hello.txt" {
		t.Fatalf("right after the rename the server has %v", got)
	}
	tmp := ".later.bin.Xy12Zw"
	if err := os.WriteFile(filepath.Join(item, tmp), []byte("never renamed"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := strings.Join(serverFiles(t, s, "demo-library", "hello"), ",")
		if got == tmp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the hold time the server has %s, want %s\n%s", got, tmp, m.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	serverHas(t, s, "demo-library", "hello", tmp, []byte("never renamed"))
	if b, err := os.ReadFile(filepath.Join(item, "hello.txt~")); err != nil || !bytes.Equal(b, old) {
		t.Fatalf("hello.txt~ after the server dropped hello.txt: %q, %v", b, err)
	}
}

// TestSharedWritableMmap: a library file mapped shared and written through
// the mapping (as tools that mmap their output do) gets its new bytes to
// the server in one session at close, and reads them back.
func TestSharedWritableMmap(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	p := m.Path("libraries", "demo-library", "hello", "hello.txt")
	old, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("MAPPED"), old[6:]...)
	n := sessions(s, func() {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		mm, err := unix.Mmap(int(f.Fd()), 0, len(old), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatalf("shared writable mmap of a library file: %v", err)
		}
		copy(mm, "MAPPED")
		if err := unix.Munmap(mm); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close after writing through the mapping: %v", err)
		}
	})
	serverHas(t, s, "demo-library", "hello", "hello.txt", want)
	if n != 1 {
		t.Fatalf("%d sessions for one mapped write", n)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the mount reads %q (%v)", got, err)
	}
}
