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
