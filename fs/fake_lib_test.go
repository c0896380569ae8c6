package fs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// libItem makes libraries/L/I through the mount and returns the item's id.
func (m *fakeMount) libItem(t *testing.T) string {
	t.Helper()
	if err := os.MkdirAll(m.path("libraries/L/I"), 0o755); err != nil {
		t.Fatal(err)
	}
	id := m.lib.itemNamed("I")
	if id == "" {
		t.Fatal("mkdir made no item")
	}
	return id
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
}

// An .ovf is committed with the files it references, in one session, once
// they are all staged; until then nothing of it reaches the server.
func TestFakeOVFHeldForItsReferences(t *testing.T) {
	m := mountFakes(t, nil)
	id := m.libItem(t)
	ovf := `<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">` +
		`<References><File ovf:href="t-disk-0.vmdk" ovf:id="f0"/><File ovf:href="t.nvram" ovf:id="f1"/></References></Envelope>`
	writeFile(t, m.path("libraries/L/I/t.ovf"), ovf)
	writeFile(t, m.path("libraries/L/I/t-disk-0.vmdk"), "disk")
	if c := m.lib.commitsOf(id); len(c) != 0 {
		t.Fatalf("committed before every reference was staged: %+v", c)
	}
	writeFile(t, m.path("libraries/L/I/t.nvram"), "nvram")
	c := m.lib.commitsOf(id)
	if len(c) != 1 {
		t.Fatalf("want one session for the template, got %+v", c)
	}
	slices.Sort(c[0].put)
	if want := []string{"t-disk-0.vmdk", "t.nvram", "t.ovf"}; !slices.Equal(c[0].put, want) {
		t.Fatalf("session put %v, want %v", c[0].put, want)
	}
	if b, _ := m.lib.file(id, "t.ovf"); string(b) != ovf {
		t.Fatalf("server has %q", b)
	}
}

// A file with rsync's temporary name waits for its rename and is committed
// once, under the final name; a read sees the bytes meanwhile.
func TestFakeTempNameHeldForRename(t *testing.T) {
	m := mountFakes(t, nil)
	id := m.libItem(t)
	writeFile(t, m.path("libraries/L/I/.f.txt.Ab12Cd"), "hello")
	if c := m.lib.commitsOf(id); len(c) != 0 {
		t.Fatalf("a temporary name reached the server: %+v", c)
	}
	if b, err := os.ReadFile(m.path("libraries/L/I/.f.txt.Ab12Cd")); err != nil || string(b) != "hello" {
		t.Fatalf("held file reads %q, %v", b, err)
	}
	if err := os.Rename(m.path("libraries/L/I/.f.txt.Ab12Cd"), m.path("libraries/L/I/f.txt")); err != nil {
		t.Fatal(err)
	}
	c := m.lib.commitsOf(id)
	if len(c) != 1 || !slices.Equal(c[0].put, []string{"f.txt"}) || len(c[0].remove) != 0 {
		t.Fatalf("want one commit of f.txt, got %+v", c)
	}
	if b, ok := m.lib.file(id, ".f.txt.Ab12Cd"); ok {
		t.Fatalf("temporary name on the server: %q", b)
	}
}

// A held file whose rename never comes is committed under its own name
// after the hold timeout.
func TestFakeHoldTimesOut(t *testing.T) {
	m := mountFakes(t, func(o *Options, w *Writes) { w.HoldTimeout = 50 * time.Millisecond })
	id := m.libItem(t)
	writeFile(t, m.path("libraries/L/I/.g.Zz9Yx8"), "x")
	deadline := time.Now().Add(10 * time.Second)
	for len(m.lib.commitsOf(id)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if b, ok := m.lib.file(id, ".g.Zz9Yx8"); !ok || string(b) != "x" {
		t.Fatalf("not committed under its own name after the hold: %q %v", b, ok)
	}
}

// A rename of a committed file is one session that puts the new name and
// removes the old; RENAME_NOREPLACE over a file is EEXIST; a rename to
// another item is EXDEV (the API cannot move a file between items).
func TestFakeRenameWithinItem(t *testing.T) {
	m := mountFakes(t, nil)
	id := m.libItem(t)
	writeFile(t, m.path("libraries/L/I/a"), "AAA")
	writeFile(t, m.path("libraries/L/I/b"), "BBB")
	before := len(m.lib.commitsOf(id))
	if err := os.Rename(m.path("libraries/L/I/a"), m.path("libraries/L/I/c")); err != nil {
		t.Fatal(err)
	}
	c := m.lib.commitsOf(id)[before:]
	if len(c) != 1 || !slices.Equal(c[0].put, []string{"c"}) || !slices.Equal(c[0].remove, []string{"a"}) {
		t.Fatalf("rename: want one session putting c and removing a, got %+v", c)
	}
	if b, _ := m.lib.file(id, "c"); string(b) != "AAA" {
		t.Fatalf("c holds %q", b)
	}
	err := unix.Renameat2(unix.AT_FDCWD, m.path("libraries/L/I/c"), unix.AT_FDCWD, m.path("libraries/L/I/b"), unix.RENAME_NOREPLACE)
	if !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("RENAME_NOREPLACE over b: %v, want EEXIST", err)
	}
	if err := os.MkdirAll(m.path("libraries/L/J"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("libraries/L/I/b"), m.path("libraries/L/J/b")); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename to another item: %v, want EXDEV", err)
	}
	if b, _ := m.lib.file(id, "b"); string(b) != "BBB" {
		t.Fatalf("b holds %q after the refused renames", b)
	}
}

// Names the encoding cannot give back as written are refused with EINVAL
// before anything is made on the server.
func TestFakeNamesRefused(t *testing.T) {
	m := mountFakes(t, nil)
	m.libItem(t)
	n, _ := m.lib.counts()
	for _, name := range []string{"50%", "a%", "%zz", "%41", "%2f"} {
		if err := os.Mkdir(m.path("libraries/L/"+name), 0o755); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("mkdir item %q: %v, want EINVAL", name, err)
		}
		if err := os.WriteFile(m.path("libraries/L/I/"+name), nil, 0o644); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("create %q: %v, want EINVAL", name, err)
		}
	}
	if items, commits := m.lib.counts(); items != n || commits != 0 {
		t.Fatalf("a refused name reached the server: %d items, %d commits", items, commits)
	}
	if err := os.Mkdir(m.path("libraries/L/100%25"), 0o755); err != nil {
		t.Fatal(err)
	}
	if m.lib.itemNamed("100%") == "" {
		t.Fatal("mkdir 100%25 did not make the item 100%")
	}
}

// A streamed upload sends exactly the bytes written, whatever the PUT's
// timing: here the fake's PUT reads the body before StartStream returns
// (a PUT that began reading before the upload was armed once sent zeros
// for the file's start). New files and appends to a loaded one, with a
// hole, read back while streaming; one session each.
func TestFakeStreamedBytes(t *testing.T) {
	m := mountFakes(t, func(o *Options, w *Writes) { w.StreamAfter = 64 << 10 })
	m.lib.streamDelay = 30 * time.Millisecond
	id := m.libItem(t)
	p := m.path("libraries/L/I/s.bin")
	var want []byte
	for i := range 40 {
		want = append(want, bytes.Repeat([]byte{byte(i + 1)}, 50_000+i)...)
	}
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.lib.file(id, "s.bin"); !bytes.Equal(b, want) {
		t.Fatalf("server has %d bytes, want %d; first difference at %d", len(b), len(want), diffAt(b, want))
	}
	// Appends to the committed file: loaded, then streamed past 64 KiB.
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b := bytes.Repeat([]byte{byte(100 + i)}, 30_000)
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	got := make([]byte, len(want)+10)
	if n, _ := f.ReadAt(got, 0); !bytes.Equal(got[:n], want) {
		t.Fatalf("read back while streaming: %d bytes, first difference at %d", n, diffAt(got[:n], want))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.lib.file(id, "s.bin"); !bytes.Equal(b, want) {
		t.Fatalf("after appends the server has %d bytes, want %d; first difference at %d", len(b), len(want), diffAt(b, want))
	}
	// A write past the end: the hole is sent as zeros.
	f, err = os.OpenFile(m.path("libraries/L/I/h.bin"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	head := bytes.Repeat([]byte{7}, 100_000)
	tail := bytes.Repeat([]byte{9}, 1000)
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(tail, 300_000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	hole := append(append(head, make([]byte, 200_000)...), tail...)
	if b, _ := m.lib.file(id, "h.bin"); !bytes.Equal(b, hole) {
		t.Fatalf("sparse file: server has %d bytes, want %d; first difference at %d", len(b), len(hole), diffAt(b, hole))
	}
	if c := m.lib.commitsOf(id); len(c) != 3 {
		t.Fatalf("%d sessions, want 3: %+v", len(c), c)
	}
}

func diffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A file's size and mtime are one answer whichever way they are asked:
// stat of the path, fstat of a read or a write descriptor, a listing,
// before and after the commit. Editors compare the time they read with the
// time they are about to overwrite (vim -Es silently refuses to write when
// they differ), so any path reporting another time is a lost save.
func TestFakeTimesAgreeAcrossPaths(t *testing.T) {
	m := mountFakes(t, nil)
	m.libItem(t)
	for _, p := range []string{"libraries/L/I/notes.txt", "vms/vm1/notes.txt"} {
		p := m.path(p)
		writeFile(t, p, "aaa\nbab\n")
		time.Sleep(20 * time.Millisecond) // a server time taken at the commit would differ
		want := statOf(t, p)
		check := func(how string, st syscall.Stat_t) {
			t.Helper()
			if st.Size != want.Size || st.Mtim != want.Mtim {
				t.Fatalf("%s: %s says size %d mtime %v, stat of the path said %d %v", p, how, st.Size, st.Mtim, want.Size, want.Mtim)
			}
		}
		ro, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ro.Close() }) // before the unmount, should a check fail
		check("fstat of a read descriptor", fstatOf(t, ro))
		rw, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rw.Close() })
		check("fstat of a write descriptor", fstatOf(t, rw))
		check("stat while both are open", statOf(t, p))
		rw.Close()
		ro.Close()
		ents, err := os.ReadDir(filepath.Dir(p))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() == filepath.Base(p) {
				info, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				check("lstat of the listed name", *info.Sys().(*syscall.Stat_t))
			}
		}
		check("stat after the closes", statOf(t, p))
	}
}

func statOf(t *testing.T, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func fstatOf(t *testing.T, f *os.File) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st
}
