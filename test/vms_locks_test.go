package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

// A guest upload holds no lock the folder's stat and listing need: while
// the PUT of a file being closed is held stalled by the server, stat of the
// folder, ls -l of it (which stats the file itself) and stat of the file
// return, and the upload is still held when they have.
func TestVMsStatDuringStalledUpload(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString(), "--timeout", "20s")
	const rule = "PUT /guestFile*=stall"
	if err := s.Faults.Add(rule); err != nil {
		t.Fatal(err)
	}
	defer s.Faults.Clear()
	src := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(src, bytes.Repeat([]byte("held "), 50000), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := m.Path("vms", guestVM, "tmp")
	cp := exec.Command("cp", src, filepath.Join(dir, "held.bin"))
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	defer cp.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for s.Faults.Waiting() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s.Faults.Waiting() == 0 {
		t.Fatalf("the upload never reached the stalled PUT (%d faulted):\n%s", s.Faults.Hits(rule), m.Log())
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("stat of the folder: %v", err)
	}
	if out, err := exec.Command("ls", "-l", dir).CombinedOutput(); err != nil {
		t.Fatalf("ls -l of the folder: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "held.bin")); err != nil {
		t.Fatalf("stat of the file being committed: %v", err)
	}
	if s.Faults.Waiting() == 0 {
		t.Fatalf("the upload ended before the stat and ls returned: they may have waited for it:\n%s", m.Log())
	}
}
