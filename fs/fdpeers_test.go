package fs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// tmpfs mounts a fresh tmpfs for the test (root only, as the suite runs).
func tmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func inoOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestKeepsWriterMatchesMount: a writable descriptor counts only for a
// file of the same mount (or a bind mount of it), not for a file of another
// filesystem with the same inode number: two fresh tmpfs number their first
// files alike.
func TestKeepsWriterMatchesMount(t *testing.T) {
	a, b := tmpfs(t), tmpfs(t)
	fa, fb := filepath.Join(a, "f"), filepath.Join(b, "f")
	for _, p := range []string{fa, fb} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ma, mb := newMountIdent(a), newMountIdent(b)
	if ma == nil || mb == nil || ma.dev == mb.dev {
		t.Fatalf("mount idents %+v %+v", ma, mb)
	}
	inoA, inoB := inoOf(t, fa), inoOf(t, fb)
	if inoA != inoB {
		t.Fatalf("inode numbers %d and %d: the test needs them alike to show the mount is matched", inoA, inoB)
	}
	self := os.Getpid()
	if pidHolds(self, ma, inoA, true) || pidHolds(self, mb, inoB, true) {
		t.Fatal("a writer found before any descriptor is open")
	}
	w, err := os.OpenFile(fa, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := os.Open(fb)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !pidHolds(self, ma, inoA, true) {
		t.Fatal("the writable descriptor of a's file is not found")
	}
	if pidHolds(self, mb, inoB, true) {
		t.Fatalf("b's file (inode %d) taken for held for writing: only a's (inode %d) is, and b's is open read-only", inoB, inoA)
	}
	if !pidHolds(self, mb, inoB, false) {
		t.Fatal("b's file, open read-only, is not found held")
	}
	// A bind mount of a shows the same filesystem under a new mount id.
	bind := t.TempDir()
	if err := syscall.Mount(a, bind, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(bind, syscall.MNT_DETACH)
	w.Close()
	if pidHolds(self, ma, inoA, true) {
		t.Fatal("a closed descriptor still found")
	}
	wb, err := os.OpenFile(filepath.Join(bind, "f"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	if !pidHolds(self, ma, inoA, true) {
		t.Fatal("a writable descriptor through a bind mount of a is not found")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/tab\011x`: "/tab\tx", `/back\134s`: `/back\s`, `/plain`: "/plain", `/odd\04`: `/odd\04`} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescape %q = %q, want %q", in, got, want)
		}
	}
}
