package test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

// Faults injected in the simulator (test/sim/faults.go), each ending in the
// right errno within the deadline, the right bytes, and no session or lease
// left. --timeout is 2s; bounds on time are generous multiples of it.

const (
	faultTimeout = 2 * time.Second
	libData      = "GET /rest/com/vmware/cis/data/*"
	guestGet     = "GET /guestFile*"
	guestBlob    = "/home/user/data/blob.bin"
)

func addFault(t *testing.T, s *sim.Server, spec string) {
	t.Helper()
	if err := s.Faults.Add(spec); err != nil {
		t.Fatal(err)
	}
}

// timedRead reads a whole file and says how long it took.
func timedRead(p string) ([]byte, error, time.Duration) {
	start := time.Now()
	b, err := os.ReadFile(p)
	return b, err, time.Since(start)
}

func guestWant() []byte {
	b, _ := io.ReadAll(sim.DemoBytes("guest"+guestBlob, 1<<20+7))
	return b
}

// noSessionsAfterUnmount unmounts and checks no download session is left.
func noSessionsAfterUnmount(t *testing.T, s *sim.Server, m *Mount) {
	t.Helper()
	m.Unmount(t)
	if ids, err := s.DownloadSessions(ctx(t)); err != nil || len(ids) != 0 {
		t.Errorf("after unmount: sessions %v, %v", ids, err)
	}
}

// TestFaultStallOneDeadline: a GET that stops mid-body fails the read with
// EIO after about one --timeout (not a multiple: no nested timers, no
// restart per reader or per kernel retry), with one log line naming the
// path, the call and the fault; in the library tree (stream and ranged) and
// the guest tree, which used to block forever. A new open then reads the
// right bytes.
func TestFaultStallOneDeadline(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, rule, path, logName string
		ranges                    bool
	}{
		{"library-stream", libData + "=stall-after:1MiB", "libraries/demo-library/multi/b.bin", "b.bin", false},
		{"library-ranged", libData + "=stall-after:512KiB", "libraries/demo-library/multi/b.bin", "b.bin", true},
		{"guest", guestGet + "=stall-after:256KiB", "vms/" + guestVM + guestBlob, "blob.bin", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := sim.StartT(t)
			s.Library.SetRanges(c.ranges)
			m := mount(t, s, "--timeout", faultTimeout.String(), "--guest-login", "root:vmware")
			addFault(t, s, c.rule)
			_, err, took := timedRead(m.Path(c.path))
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("stalled read: %v, want EIO", err)
			}
			if took > 2*faultTimeout+time.Second {
				t.Errorf("EIO after %v, want about one --timeout (%v)", took, faultTimeout)
			}
			if !m.WaitLog("no data received", c.logName, "call=") {
				t.Errorf("no log line naming path, call and fault:\n%s", m.Log())
			}
			if n := strings.Count(m.Log(), "no data received"); n != 1 {
				t.Errorf("%d log lines for one stall, want 1:\n%s", n, m.Log())
			}
			s.Faults.Clear()
			var want []byte
			if strings.HasPrefix(c.path, "vms/") {
				want = guestWant()
			} else {
				want, _ = s.Download(ctx(t), "demo-library", "multi", "b.bin")
			}
			got, err := os.ReadFile(m.Path(c.path))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after the stall: %d bytes, %v", len(got), err)
			}
			if w := s.Faults.Waiting(); w != 0 {
				t.Errorf("%d stalled requests still held by the client", w)
			}
			noSessionsAfterUnmount(t, s, m)
		})
	}
}

// TestFaultRetries: 503s, resets and refused connections on GETs and on
// idempotent calls (prepare, InitiateFileTransferFromGuest, ListFilesInGuest,
// SOAP reads) are retried with backoff: reads give the right bytes.
func TestFaultRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		rules  []string
		ranges bool
	}{
		{"503", []string{
			libData + "=503x3",
			"POST /rest/com/vmware/content/library/item/download-session*=503x1",
			"POST /rest/com/vmware/content/library/item/downloadsession/file*=503x2",
			"POST /sdk#InitiateFileTransferFromGuest=503x2",
			guestGet + "=503x2",
			"POST /sdk#ListFilesInGuest=503x1",
		}, false},
		{"reset-stream", []string{libData + "=reset-after:1536KiBx2", guestGet + "=reset-after:300KiBx2", "POST /sdk#ListFilesInGuest=refusex2"}, false},
		{"reset-ranged", []string{libData + "=reset-after:1536KiBx2", libData + "=refusex1"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := sim.StartT(t)
			s.Library.SetRanges(c.ranges)
			m := mount(t, s, "--timeout", "10s", "--guest-login", "root:vmware")
			want, err := s.Download(ctx(t), "demo-library", "multi", "b.bin") // before the faults
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range c.rules {
				addFault(t, s, r)
			}
			got, err := os.ReadFile(m.Path("libraries/demo-library/multi/b.bin"))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("library read: %d bytes, %v\n%s", len(got), err, m.Log())
			}
			if !c.ranges {
				got, err = os.ReadFile(m.Path("vms", guestVM, guestBlob))
				if err != nil || !bytes.Equal(got, guestWant()) {
					t.Fatalf("guest read: %d bytes, %v\n%s", len(got), err, m.Log())
				}
			}
			for _, r := range c.rules {
				if c.ranges && strings.Contains(r, "guestFile") {
					continue
				}
				if s.Faults.Hits(r) == 0 {
					t.Errorf("fault %q never hit: the test tests nothing", r)
				}
			}
			noSessionsAfterUnmount(t, s, m)
		})
	}
}

// TestFaultExhaustedIsEIO: when retries run out (a 503 or a reset on every
// try), the read fails with EIO, never ECONNRESET or another socket errno,
// within about one --timeout, and says so in the log.
func TestFaultExhaustedIsEIO(t *testing.T) {
	t.Parallel()
	for _, rule := range []string{libData + "=503", libData + "=reset", libData + "=refuse", guestGet + "=reset-after:100KiB"} {
		t.Run(strings.SplitN(rule, "=", 2)[1], func(t *testing.T) {
			s := sim.StartT(t)
			m := mount(t, s, "--timeout", faultTimeout.String(), "--guest-login", "root:vmware")
			addFault(t, s, rule)
			p := m.Path("libraries/demo-library/multi/a.bin")
			if strings.Contains(rule, "guestFile") {
				p = m.Path("vms", guestVM, guestBlob)
			}
			_, err, took := timedRead(p)
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("read: %v, want EIO", err)
			}
			if took > 3*faultTimeout {
				t.Errorf("EIO after %v, want within about one --timeout", took)
			}
			if !m.WaitLog("level=ERROR", "call=") {
				t.Errorf("no log line:\n%s", m.Log())
			}
			noSessionsAfterUnmount(t, s, m)
		})
	}
}

// TestFaultHungServer: a vCenter that stops answering makes ls wait one
// --timeout and fail with EIO, not hang or wait twice.
func TestFaultHungServer(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--timeout", faultTimeout.String(), "--guest-login", "root:vmware", "--ttl", "1ms")
	addFault(t, s, "POST /sdk=hang")
	addFault(t, s, "* /rest/*=hang")
	time.Sleep(10 * time.Millisecond)
	for _, dir := range []string{"vms", "libraries"} {
		start := time.Now()
		out, err := exec.Command("ls", m.Path(dir)).CombinedOutput()
		took := time.Since(start)
		if err == nil || !strings.Contains(string(out), "Input/output error") {
			t.Errorf("ls %s: %v %s, want EIO", dir, err, out)
		}
		if took > faultTimeout*3/2+time.Second {
			t.Errorf("ls %s took %v with a hung server, want about one --timeout (%v)", dir, took, faultTimeout)
		}
	}
	if !m.WaitLog("no answer within --timeout") {
		t.Errorf("log does not say the server did not answer:\n%s", m.Log())
	}
	// A Windows guest's drives are probed 24 letters, 6 at a time: still one
	// --timeout when the guest agent stops answering.
	s.Faults.Clear()
	if _, err := os.Stat(m.Path("vms", sim.DemoWindowsVM)); err != nil {
		t.Fatal(err)
	}
	addFault(t, s, "POST /sdk#ListFilesInGuest=hang")
	start := time.Now()
	if _, err := os.ReadDir(m.Path("vms", sim.DemoWindowsVM)); !errors.Is(err, syscall.EIO) {
		t.Errorf("ls of a Windows guest whose agent hangs: %v, want EIO", err)
	}
	if took := time.Since(start); took > faultTimeout*3/2+time.Second {
		t.Errorf("drive probes took %v with a hung guest, want about one --timeout", took)
	}

	// A server that answers, then hangs: the view is made, its retrieval
	// and its cleanup hang. Still one --timeout.
	s.Faults.Clear()
	for _, call := range []string{"RetrievePropertiesEx", "RetrieveProperties", "DestroyView"} {
		addFault(t, s, "POST /sdk#"+call+"=hang")
	}
	start = time.Now()
	out, err := exec.Command("ls", m.Path("vms")).CombinedOutput()
	if took := time.Since(start); err == nil || took > faultTimeout*3/2+time.Second {
		t.Errorf("ls vms with retrievals hung: %v after %v\n%s", err, took, out)
	}
	s.Faults.Clear()
}

// TestFaultSignalCancelsTransfer: SIGINT to a reader blocked on a stalled
// transfer ends it at once (not when --timeout fires), and the transfer,
// which no one else waits for, is cancelled.
func TestFaultSignalCancelsTransfer(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, rule, path string }{
		{"library", libData + "=stall-after:1MiB", "libraries/demo-library/multi/b.bin"},
		{"guest", guestGet + "=stall-after:256KiB", "vms/" + guestVM + guestBlob},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := sim.StartT(t)
			m := mount(t, s, "--timeout", "60s", "--guest-login", "root:vmware")
			addFault(t, s, c.rule)
			// O_DIRECT: each read is one request the kernel interrupts (a
			// page-cache read-ahead is not interrupted, but close ends it).
			cmd := exec.Command("dd", "if="+m.Path(c.path), "of=/dev/null", "bs=128k", "iflag=direct")
			cmd.Stdout = io.Discard
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for s.Faults.Waiting() == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if s.Faults.Waiting() == 0 {
				t.Fatal("the transfer never stalled")
			}
			_ = cmd.Process.Signal(syscall.SIGINT)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("dd did not stop on SIGINT")
			}
			for s.Faults.Waiting() != 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if s.Faults.Waiting() != 0 {
				t.Fatalf("the stalled transfer was not cancelled after its only reader left (%d requests faulted)", s.Faults.Hits(c.rule))
			}
			s.Faults.Clear()
			noSessionsAfterUnmount(t, s, m)
		})
	}
}

// TestFaultExportDiskRetried: an export disk transfer that is reset once is
// tried again (from the bytes spooled) instead of failing the export: one
// lease, completed, the right disk; reset on every try, the export fails
// with EIO and its lease is aborted.
func TestFaultExportDiskRetried(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	vm := simVM(t, s, exportVM, true)
	// Powered off before the mount: the mount keeps the VM list for the
	// TTL, and a power-off later could come just after a refresh of it.
	const other = "DC0_C0_RP0_VM1"
	simVM(t, s, other, true)
	m := mount(t, s, "--timeout", "10s")
	const once = "GET /nfc/*=reset-after:512KiBx1"
	addFault(t, s, once)
	raw, err := s.Disks.Raw(vm.Reference(), diskKeys(t, vm)[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.CompareRawFile(m.Path("disks", exportVM, "disk-0.img"), raw); err != nil {
		t.Fatalf("disk after a reset: %v\n%s", err, m.Log())
	}
	if s.Faults.Hits(once) != 1 {
		t.Fatalf("the reset never happened: the test tests nothing")
	}
	if s.Exports.LeasesCreated() != 1 || s.Exports.ActiveLeases() != 0 {
		t.Errorf("leases: %d created, %d active, want 1 and 0", s.Exports.LeasesCreated(), s.Exports.ActiveLeases())
	}

	// Every try reset: EIO, the lease aborted, nothing left active.
	s.Faults.Clear()
	addFault(t, s, "GET /nfc/*=reset-after:512KiB")
	if _, err := os.Stat(m.Path("disks", other, "disk-0.img")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("export reset on every try: %v, want EIO", err)
	}
	if s.Exports.ActiveLeases() != 0 {
		t.Errorf("%d leases left active after a failed export", s.Exports.ActiveLeases())
	}
	s.Faults.Clear()
}

// eintrReader opens a file with O_DIRECT and reads it; SIGUSR1 (handled, no
// SA_RESTART) must end a blocked read(2) with EINTR, which it prints.
const eintrReader = `
import os, signal, sys, errno
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.siginterrupt(signal.SIGUSR1, True)
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
print("open", flush=True)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(1 << 17)
while True:
    n = libc.read(fd, buf, 1 << 17)
    if n < 0:
        print("errno", errno.errorcode[ctypes.get_errno()], flush=True)
        break
    if n == 0:
        print("eof", flush=True)
        break
`

// TestFaultSignalEINTR: a handled signal to a reader blocked on a stalled
// transfer makes read(2) return EINTR at once; the process goes on.
func TestFaultSignalEINTR(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is needed for this test")
	}
	s := sim.StartT(t)
	m := mount(t, s, "--timeout", "60s", "--guest-login", "root:vmware")
	addFault(t, s, guestGet+"=stall-after:256KiB")
	cmd := exec.Command("python3", "-c", eintrReader, m.Path("vms", guestVM, guestBlob))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.Faults.Waiting() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the read is blocked in the mount now
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGUSR1)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "errno EINTR") {
			t.Fatalf("reader: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("read(2) not interrupted by a signal\n%s", out.String())
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("EINTR after %v", took)
	}
	for s.Faults.Waiting() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s.Faults.Waiting() != 0 {
		t.Error("the stalled transfer was not cancelled after its only reader left")
	}
	s.Faults.Clear()
}
