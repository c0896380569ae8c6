package test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

// signalCaller makes one call through ctypes (so that Python does not retry
// EINTR itself), with handlers for the signals the test sends.
const signalCaller = `
import ctypes, errno, os, signal, sys
for s in (signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGUSR1):
    signal.signal(s, lambda *a: None)
libc = ctypes.CDLL(None, use_errno=True)
op, path = sys.argv[1], sys.argv[2]
if op == "read":
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
print("start", flush=True)
if op == "access":
    r = libc.access(path.encode(), 0)
elif op == "getxattr":
    buf = ctypes.create_string_buffer(256)
    r = libc.getxattr(path.encode(), b"user.vsphere.guest_group", buf, 256)
else:
    buf = ctypes.create_string_buffer(1 << 17)
    r = libc.read(fd, buf, 1 << 17)
if r < 0:
    print("errno", errno.errorcode[ctypes.get_errno()], flush=True)
else:
    print("ok", r, flush=True)
`

// callWithSignals runs op on path and sends sigs to the caller, 150 ms apart,
// once it is blocked in the call; it returns what the caller printed and
// how long the call took.
func callWithSignals(t *testing.T, op, path string, sigs ...syscall.Signal) (string, time.Duration) {
	t.Helper()
	cmd := exec.Command("python3", "-c", signalCaller, op, path)
	var out bytes.Buffer
	cmd.Stderr = &out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	if l, err := lines.ReadString('\n'); err != nil || l != "start\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("caller did not start: %q %v %s", l, err, out.String())
	}
	start := time.Now()
	for _, sig := range sigs {
		time.Sleep(150 * time.Millisecond)
		_ = cmd.Process.Signal(sig)
	}
	done := make(chan []byte, 1)
	go func() {
		rest := new(bytes.Buffer)
		_, _ = rest.ReadFrom(lines)
		done <- rest.Bytes()
	}()
	select {
	case b := <-done:
		took := time.Since(start)
		_ = cmd.Wait()
		return strings.TrimSpace(string(b) + out.String()), took
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("%s %s did not return", op, path)
	}
	return "", 0
}

// TestSignalsNotificationsDoNotInterrupt: a signal that only notifies (a
// child's SIGCHLD, Go's preemption SIGURG, SIGWINCH), caught by the caller
// while its call waits on a slow server, does not fail the call with EINTR
// (what a local disk does too); a signal that asks to stop (SIGUSR1 caught,
// here after a notification) still ends it at once.
func TestSignalsNotificationsDoNotInterrupt(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is needed for this test")
	}
	s := sim.StartT(t)
	m := mount(t, s, "--timeout", "60s", "--guest-login", "root:vmware")
	notify := []syscall.Signal{syscall.SIGCHLD, syscall.SIGURG, syscall.SIGWINCH}

	// Each slow call waits out two 503s (Retry-After: 1 s).
	for _, c := range []struct{ op, fault, path string }{
		{"access", "POST /sdk#ListFilesInGuest=503x2", m.Path("vms", guestVM, "home", "user", "data")},
		{"getxattr", "POST /sdk#ListFilesInGuest=503x2", m.Path("vms", guestVM, "etc", "hostname")},
		{"read", guestGet + "=503x2", m.Path("vms", guestVM, guestBlob)},
	} {
		addFault(t, s, c.fault)
		out, took := callWithSignals(t, c.op, c.path, notify...)
		if !strings.HasPrefix(out, "ok") {
			t.Errorf("%s %s with %v caught meanwhile: %s after %v, want success", c.op, c.path, notify, out, took)
		}
		s.Faults.Clear()
	}

	// A signal that asks to stop, after a notification (the kernel sends
	// one interrupt per request): EINTR at once, not at --timeout. The
	// lookup is a fresh mount's, which has nothing cached to answer from.
	fresh := mount(t, s, "--timeout", "60s", "--guest-login", "root:vmware")
	fresh2 := mount(t, s, "--timeout", "60s", "--guest-login", "root:vmware")
	for _, c := range []struct{ op, fault, path string }{
		{"access", "POST /sdk=hang", fresh.Path("vms", guestVM)},
		{"access", "POST /sdk=503x5", fresh2.Path("vms", guestVM)},
		{"read", guestGet + "=hang", m.Path("vms", guestVM, "etc", "os-release")},
	} {
		addFault(t, s, c.fault)
		out, took := callWithSignals(t, c.op, c.path, syscall.SIGCHLD, syscall.SIGUSR1)
		if out != "errno EINTR" || took > 5*time.Second {
			t.Errorf("%s %s on a hung server, SIGCHLD then SIGUSR1: %s after %v, want EINTR at once", c.op, c.path, out, took)
		}
		s.Faults.Clear()
	}
}
