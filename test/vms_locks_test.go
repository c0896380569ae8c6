package test

import (
	"bytes"
	"fmt"
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
	t.Parallel()
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

// A guest file's load of its current bytes holds no lock stat needs: while
// the GET of a file opened with O_APPEND and written to is held stalled by
// the server (the write keeps the old bytes, so the stage loads them), stat
// of the file and ls -l of its folder return, and the load is still held
// when they have.
func TestVMsStatDuringStalledLoad(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString(), "--timeout", "20s")
	dir := m.Path("vms", guestVM, "tmp")
	file := filepath.Join(dir, "loading.bin")
	if err := os.WriteFile(file, bytes.Repeat([]byte("old "), 512<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	const rule = "GET /guestFile*=stall-after:64KiB"
	if err := s.Faults.Add(rule); err != nil {
		t.Fatal(err)
	}
	defer s.Faults.Clear()
	w := exec.Command("sh", "-c", "echo more >> "+file)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		w.Process.Kill()
		w.Wait()
	}()
	deadline := time.Now().Add(15 * time.Second)
	for s.Faults.Waiting() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s.Faults.Waiting() == 0 {
		t.Fatalf("the load never reached the stalled GET (%d faulted):\n%s", s.Faults.Hits(rule), m.Log())
	}
	prompt := func(what string, fn func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s waited for the stalled load", what)
		}
	}
	prompt("stat of the file being loaded", func() error {
		_, err := os.Stat(file)
		return err
	})
	prompt("ls -l of its folder", func() error {
		if out, err := exec.Command("ls", "-l", dir).CombinedOutput(); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})
	if s.Faults.Waiting() == 0 {
		t.Fatalf("the load ended before the stat and ls returned: they may have waited for it:\n%s", m.Log())
	}
}
