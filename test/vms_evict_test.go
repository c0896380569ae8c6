package test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

// TestVMsSpoolEviction: with a small --cache-size and --spool-size, a guest
// file read, then pushed out by reading others, is read again with a new
// transfer: a second InitiateFileTransferFromGuest and a fresh URL (the
// used one-shot URL is never tried again), and the same bytes.
func TestVMsSpoolEviction(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString(), "--cache-size", "4MiB", "--spool-size", "4MiB")
	const a = "/home/user/data/blob.bin" // 1 MiB + 7
	wantA, _ := io.ReadAll(sim.DemoBytes("guest"+a, 1<<20+7))
	others := map[string][]byte{}
	for _, p := range []string{"/tmp/b.bin", "/tmp/c.bin"} {
		others[p] = putGuestFile(t, s, p, 3<<20)
	}
	read := func(p string, want []byte) {
		t.Helper()
		full := m.Path("vms", guestVM, p)
		dropPageCache(t, full)
		if b, err := os.ReadFile(full); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("%s: %d bytes, %v", p, len(b), err)
		}
	}

	read(a, wantA)
	read(a, wantA) // from the cache and spool: no new transfer
	if n := s.Guest.Stats().FromGuest[a]; n != 1 {
		t.Fatalf("%d transfers of %s before eviction, want 1", n, a)
	}
	before := s.Guest.Stats()
	for p, want := range others { // 6 MiB: A's spool and blocks go
		read(p, want)
	}
	spools, _ := filepath.Glob(filepath.Join(m.CacheDir, "spool-*", "*"))
	var spooled int64
	for _, f := range spools {
		if fi, err := os.Stat(f); err == nil {
			spooled += fi.Size()
		}
	}
	if spooled > 4<<20+3<<20 { // the budget, plus the spool of the last file read
		t.Errorf("%d bytes spooled with --spool-size 4MiB", spooled)
	}
	read(a, wantA)
	after := s.Guest.Stats()
	if n := after.FromGuest[a]; n != 2 {
		t.Errorf("%d transfers of %s after eviction, want 2", n, a)
	}
	if after.Refused != before.Refused {
		t.Errorf("%d GETs refused: a one-shot URL was tried again", after.Refused-before.Refused)
	}
	if n := after.Gets - before.Gets; n != len(others)+1 {
		t.Errorf("%d GETs for %d files and one re-read", n, len(others))
	}
}
