package test

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

const guestVM = "DC0_H0_VM0"

// TestVMsListing: vms/ lists the VMs; a guest directory shows names, types,
// modes, sizes and sub-second mtimes as the guest reports them, with one
// paged list call per directory, however many entries are stat'ed.
func TestVMsListing(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", "root:vmware")
	entries, err := os.ReadDir(m.Path("vms"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); !strings.Contains(got, guestVM) || !strings.Contains(got, sim.DemoOffVM) {
		t.Fatalf("vms/: %s", got)
	}

	before := s.Guest.Stats().Calls["ListFilesInGuest"]
	out := run(t, "ls", "-l", "--time-style=full-iso", m.Path("vms", guestVM, "etc"), m.Path("vms", guestVM, "var", "log"))
	if !strings.Contains(out, "-rw-r--r--") || !strings.Contains(out, "2024-05-01 12:00:00.123456789") {
		t.Fatalf("ls -l:\n%s", out)
	}
	// vms/<vm>/ "/", etc and var are looked up, etc and var/log listed: a
	// handful of calls, none per entry.
	if n := s.Guest.Stats().Calls["ListFilesInGuest"] - before; n > 4 {
		t.Errorf("%d ListFilesInGuest calls for ls -l of two directories", n)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(m.Path("vms", guestVM, "etc", "hostname"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(guestVM)+1) || st.Mode != syscall.S_IFREG|0o644 || st.Mtim.Nsec != 123456789 {
		t.Errorf("stat hostname: size %d mode %o mtime %v", st.Size, st.Mode, st.Mtim)
	}
	if target, err := os.Readlink(m.Path("vms", guestVM, "home", "syslog")); err != nil || target != "../var/log/syslog" {
		t.Errorf("readlink: %q %v", target, err)
	}
	if b, err := os.ReadFile(m.Path("vms", guestVM, "home", "syslog")); err != nil || len(b) != 64<<10 {
		t.Errorf("read through the symlink: %d bytes, %v", len(b), err)
	}
}

// TestVMsRead: reads give the guest's bytes; re-reads and concurrent
// readers are served by one transfer.
func TestVMsRead(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", "root:vmware")
	if b, err := os.ReadFile(m.Path("vms", guestVM, "etc", "hostname")); err != nil || string(b) != guestVM+"\n" {
		t.Fatalf("hostname: %q %v", b, err)
	}
	const blob = "/home/user/data/blob.bin"
	want, _ := io.ReadAll(sim.DemoBytes("guest"+blob, 1<<20+7))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			b, err := os.ReadFile(m.Path("vms", guestVM, blob))
			if err != nil || !bytes.Equal(b, want) {
				t.Errorf("concurrent read: %d bytes, %v", len(b), err)
			}
		})
	}
	wg.Wait()
	f, err := os.Open(m.Path("vms", guestVM, blob))
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1000)
	if _, err := f.ReadAt(p, 500000); err != nil || !bytes.Equal(p, want[500000:501000]) {
		t.Errorf("pread: %v", err)
	}
	f.Close()
	if n := s.Guest.Stats().FromGuest[blob]; n != 1 {
		t.Errorf("%d transfers for 4 concurrent readers and a pread, want 1", n)
	}
}

// TestVMsRefusals: a wrong password gives EACCES, a powered-off VM EHOSTDOWN,
// each with a log line naming the VM and the fault, never the password.
func TestVMsRefusals(t *testing.T) {
	s := sim.StartT(t, sim.Options{Demo: true, GuestLogin: url.UserPassword("root", "right")})
	m := mount(t, s, "--guest-login", "root:wrong-pass")
	if _, err := os.ReadDir(m.Path("vms", guestVM)); !errors.Is(err, syscall.EACCES) {
		t.Errorf("wrong password: %v", err)
	}
	// A powered-off VM's folder lists nothing (a walk of the mount stays clean); names in it are EHOSTDOWN.
	if ents, err := os.ReadDir(m.Path("vms", sim.DemoOffVM)); err != nil || len(ents) != 0 {
		t.Errorf("powered-off VM: %d entries, %v; want none", len(ents), err)
	}
	if _, err := os.Stat(m.Path("vms", sim.DemoOffVM, "etc")); !errors.Is(err, syscall.EHOSTDOWN) {
		t.Errorf("powered-off VM: %v", err)
	}
	if !m.WaitLog(guestVM, "InvalidGuestLogin", sim.DemoOffVM, "InvalidPowerState") {
		t.Errorf("log lines:\n%s", m.Log())
	}
	log := m.Log()
	if strings.Contains(log, "wrong-pass") {
		t.Errorf("password in the log:\n%s", log)
	}
}
