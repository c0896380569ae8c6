package test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

// TestVMsWindows: a Windows guest's drives are its top-level folders;
// reads, writes, mkdir, mv, rm, chmod (the readOnly attribute) and times
// work through Windows paths; what the top level cannot hold is EPERM.
func TestVMsWindows(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	win := func(elem ...string) string { return m.Path(append([]string{"vms", sim.DemoWindowsVM}, elem...)...) }
	host := guestHostDir(t, s, sim.DemoWindowsVM) // drives are its folders C, D

	// The top level: the drives found by probing, cached.
	if got := readdirNames(t, win()); got != "C:,D:" {
		t.Fatalf("vms/%s: %s", sim.DemoWindowsVM, got)
	}
	before := s.Guest.Stats().Calls["ListFilesInGuest"]
	readdirNames(t, win())
	if _, err := os.Stat(win("C:")); err != nil {
		t.Fatal(err)
	}
	if n := s.Guest.Stats().Calls["ListFilesInGuest"] - before; n != 0 {
		t.Errorf("%d ListFilesInGuest calls for the drives again", n)
	}
	if _, err := os.Stat(win("E:")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat E:: %v", err)
	}

	// ls -l: Windows attributes as modes, times to 100 ns.
	out := run(t, "ls", "-la", "--time-style=full-iso", win("C:"), win("C:", "Windows"))
	for _, want := range []string{"pagefile.sys", "ProgramData", "-r--r--r-- 1 ", "win.ini", "2024-05-01 12:00:00.123456700"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls -l lacks %q:\n%s", want, out)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(win("C:", "pagefile.sys"), &st); err != nil || st.Mode != syscall.S_IFREG|0o644 || st.Mtim.Nsec != 123456700 {
		t.Errorf("stat pagefile.sys: mode %o mtime %v %v", st.Mode, st.Mtim, err)
	}

	// Reads.
	if b, err := os.ReadFile(win("C:", "Users", "Administrator", "Desktop", "notes.txt")); err != nil || string(b) != sim.DemoWindowsVM+": guest files through vspherefs\r\n" {
		t.Errorf("notes.txt: %q %v", b, err)
	}
	want, _ := io.ReadAll(sim.DemoBytes(`guestD:\data\archive.bin`, 1<<20+11))
	if b, err := os.ReadFile(win("D:", "data", "archive.bin")); err != nil || !bytes.Equal(b, want) {
		t.Errorf("archive.bin: %d bytes, %v", len(b), err)
	}

	// Writes: a new file, then a replacement; govc reads what the mount wrote.
	newFile := win("C:", "Temp", "new.txt")
	if err := os.WriteFile(newFile, []byte("first\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newFile, []byte("second, longer\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "C", "Temp", "new.txt")); string(b) != "second, longer\r\n" {
		t.Errorf("guest has %q", b)
	}
	if got := govcGuest(t, s, "guest.download", "-vm", sim.DemoWindowsVM, `C:\Temp\new.txt`, "-"); got != "second, longer\r\n" {
		t.Errorf("govc guest.download: %q", got)
	}
	if got := readdirNames(t, win("C:", "Temp")); got != "new.txt" {
		t.Errorf("C:/Temp after two commits: %s", got)
	}

	// mkdir, mv of files and directories, across drives, rm, rmdir.
	if err := os.MkdirAll(win("C:", "Temp", "dir", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newFile, win("C:", "Temp", "dir", "sub", "moved.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(win("C:", "Temp", "dir"), win("D:", "dir2")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "D", "dir2", "sub", "moved.txt")); string(b) != "second, longer\r\n" {
		t.Errorf("after mv: %q", b)
	}
	if b, err := os.ReadFile(win("D:", "dir2", "sub", "moved.txt")); err != nil || string(b) != "second, longer\r\n" {
		t.Errorf("read after mv: %q %v", b, err)
	}

	// chmod: the owner write bit is the readOnly attribute; the rest is
	// accepted and not kept. chown changes nothing and is no error.
	f := win("D:", "dir2", "sub", "moved.txt")
	if err := os.Chmod(f, 0o444); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(host, "D", "dir2", "sub", "moved.txt")); fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("guest file after chmod 0444: %v", fi.Mode())
	}
	if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("stat after chmod 0444: %v %v", fi.Mode(), err)
	}
	if _, err := os.OpenFile(f, os.O_WRONLY, 0); !errors.Is(err, syscall.EACCES) {
		t.Errorf("open a read-only file for writing: %v", err)
	}
	if err := os.Remove(f); !errors.Is(err, syscall.EACCES) {
		t.Errorf("rm of a read-only file: %v", err)
	}
	if err := os.Chmod(f, 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("stat after chmod 0755: %v %v", fi.Mode(), err)
	}
	if err := os.Chown(f, 1234, 1234); err != nil {
		t.Errorf("chown: %v", err)
	}

	// Times, to NTFS's 100 ns.
	mt := time.Date(2022, 6, 7, 8, 9, 10, 987654321, time.UTC)
	if err := os.Chtimes(f, mt, mt); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(f); err != nil || !fi.ModTime().Equal(mt.Truncate(100)) {
		t.Errorf("mtime after utimens: %v %v", fi.ModTime(), err)
	}
	if fi, _ := os.Stat(filepath.Join(host, "D", "dir2", "sub", "moved.txt")); !fi.ModTime().Equal(mt.Truncate(100)) {
		t.Errorf("guest mtime: %v", fi.ModTime())
	}

	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(win("D:", "dir2", "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(win("D:", "dir2")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(host, "D", "dir2")); !os.IsNotExist(err) {
		t.Errorf("rmdir: %v", err)
	}

	// cp -r both ways.
	local := t.TempDir()
	makeTree(t, filepath.Join(local, "src"), 40, 0, 7)
	run(t, "cp", "-r", filepath.Join(local, "src"), win("C:", "Temp", "tree"))
	run(t, "cp", "-r", win("C:", "Temp", "tree"), filepath.Join(local, "back"))
	run(t, "diff", "-r", filepath.Join(local, "src"), filepath.Join(local, "back"))

	// What Windows cannot hold: folders and files at the top level, drives
	// removed or renamed (EPERM); names with ':' and the like (EINVAL).
	for name, err := range map[string]error{
		"mkdir top":    os.Mkdir(win("X"), 0o755),
		"create top":   os.WriteFile(win("file.txt"), nil, 0o644),
		"rmdir drive":  os.Remove(win("D:")),
		"rename drive": os.Rename(win("D:"), win("E:")),
	} {
		if !errors.Is(err, syscall.EPERM) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, err := range map[string]error{
		"create a:b":  os.WriteFile(win("C:", "Temp", "a:b"), nil, 0o644),
		"mkdir a?":    os.Mkdir(win("C:", "Temp", "a?"), 0o755),
		"create a\\b": os.WriteFile(win("C:", "Temp", `a\b`), nil, 0o644),
	} {
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
