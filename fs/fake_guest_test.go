package fs

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// The table of displaced guest inode numbers stays bounded by the nodes the
// kernel holds, however many files are made and renamed over, and two live
// files never share a number.
func TestFakeGuestInoTableBounded(t *testing.T) {
	m := mountFakes(t, func(o *Options, w *Writes) { o.InoSweep, o.InoGrace = 16, time.Millisecond })
	dir := m.path("vms/vm1")
	const rounds = 100
	for i := range rounds {
		p := fmt.Sprintf("%s/f%d", dir, i%7)
		writeFile(t, p+".new", "x")
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
	}
	// Drop the kernel's references, so that the sweep may forget them.
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Logf("drop_caches: %v (the kernel keeps its entries; the bound below still holds)", err)
	}
	time.Sleep(5 * time.Millisecond)
	for i := range rounds {
		p := fmt.Sprintf("%s/g%d", dir, i%7)
		writeFile(t, p+".new", "y")
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
	}
	m.fs.inos.mu.Lock()
	n := len(m.fs.inos.taken)
	m.fs.inos.mu.Unlock()
	if n >= rounds {
		t.Fatalf("inode table holds %d entries after %d renames over 14 names: not bounded", n, 2*rounds)
	}
	seen := map[uint64]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		var st syscall.Stat_t
		if err := syscall.Stat(dir+"/"+e.Name(), &st); err != nil {
			t.Fatal(err)
		}
		if o, ok := seen[st.Ino]; ok {
			t.Fatalf("%s and %s share inode %d", o, e.Name(), st.Ino)
		}
		seen[st.Ino] = e.Name()
	}
	if len(seen) != 14 {
		t.Fatalf("listed %d files, want 14", len(seen))
	}
}

// A truncate(2) of a guest file after its writer's close(2) but before the
// kernel's release of the file (here held by a mapping, which keeps the
// file without a descriptor: no flush comes after) is committed at the
// release, not dropped with the stage.
func TestFakeGuestTruncateBeforeRelease(t *testing.T) {
	m := mountFakes(t, nil)
	p := m.path("vms/vm1/t.txt")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("short"); err != nil {
		t.Fatal(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 5, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil { // the commit; the mapping holds the file
		t.Fatal(err)
	}
	guest := func() string {
		m.guests.mu.Lock()
		defer m.guests.mu.Unlock()
		if g := m.guests.files["/t.txt"]; g != nil {
			return string(g.data)
		}
		return "<none>"
	}
	if got := guest(); got != "short" {
		t.Fatalf("after close the guest has %q", got)
	}
	if err := os.Truncate(p, 2); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Munmap(mem); err != nil { // the release, with no flush
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for guest() != "sh" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := guest(); got != "sh" {
		t.Fatalf("after truncate(2) and the release the guest has %q, want \"sh\"", got)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "sh" {
		t.Fatalf("the mount reads %q (%v)", b, err)
	}
}
