package test

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

// childWriter opens a file with O_TRUNC, runs a child (fork and exec: the
// child's copies of the descriptor are closed, each close a flush from the
// child), waits for a line on stdin, then writes, runs another child, and
// closes.
const childWriter = `
import os, subprocess, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
subprocess.run(["true"])
subprocess.run(["true"], close_fds=False)
print("forked", flush=True)
sys.stdin.readline()
os.write(fd, b"new bytes\n")
subprocess.run(["true"])
os.close(fd)
print("closed", flush=True)
`

// TestFlushFromChildNotCommitted: a process writing a file runs children
// meanwhile (a backup tool's compressor, a build's compiler). Their exec
// closes the descriptor they inherited, and FUSE reports each close as a
// flush. The flush must not commit: the writer still has the file open, and
// a commit then would give the server the file as it is at that moment
// (here empty, just truncated). The writer's own close commits, once.
func TestFlushFromChildNotCommitted(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is needed for this test")
	}
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", "root:vmware")
	guestFile := m.Path("vms", guestVM, "tmp", "child.txt")
	if err := os.WriteFile(guestFile, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	guestHost := filepath.Join(guestHostDir(t, s, guestVM), "tmp", "child.txt")
	old, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		server     func() string
		old        string
	}{
		{"library", m.Path("libraries", "demo-library", "hello", "hello.txt"), func() string {
			b, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt")
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}, string(old)},
		{"guest", guestFile, func() string {
			b, err := os.ReadFile(guestHost)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}, "old\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			completed := s.Updates.Completed()
			cmd := exec.Command("python3", "-c", childWriter, c.path)
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			lines := bufio.NewReader(stdout)
			if l, _ := lines.ReadString('\n'); l != "forked\n" {
				stdin.Close()
				t.Fatalf("writer: %q", l)
			}
			if got := c.server(); got != c.old {
				t.Errorf("while the writer has the file open, after its children ran: the server has %q, want %q", got, c.old)
			}
			stdin.Write([]byte("go\n"))
			if l, _ := lines.ReadString('\n'); l != "closed\n" {
				t.Fatalf("writer: %q", l)
			}
			if got := c.server(); got != "new bytes\n" {
				t.Errorf("after the writer's close the server has %q", got)
			}
			if c.name == "library" {
				if n := s.Updates.Completed() - completed; n != 1 {
					t.Errorf("%d sessions completed, want 1 (the writer's close)", n)
				}
			}
			if b, err := os.ReadFile(c.path); err != nil || !strings.HasPrefix(string(b), "new bytes") {
				t.Errorf("the mount reads %q (%v)", b, err)
			}
		})
	}
}

// TestFlushFromChildKeepsReads: a process reading a file runs children
// meanwhile; each child's exec closes its inherited copy of the
// descriptor, a flush from the child. That flush must not end the parent's
// reads nor cancel the transfer they share: the read goes on in the one
// transfer it started. (Before, the stream was cancelled at the child's
// flush and started again: 2 transfers for one reader.)
func TestFlushFromChildKeepsReads(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	const size = 24 << 20
	guestWant := putGuestFile(t, s, "/tmp/kept.bin", size)
	libWant, err := s.Download(ctx(t), "demo-library", "big", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		path      string
		want      []byte
		pace      func(int64)
		transfers func() int64
	}{
		{"library", m.Path("libraries", "demo-library", "big", "big.bin"), libWant, s.Library.SetRate,
			func() int64 { gets, _, _ := s.Library.Stats(); return gets }},
		{"guest", m.Path("vms", guestVM, "tmp", "kept.bin"), guestWant, s.Guest.SetRate,
			func() int64 { return int64(s.Guest.Stats().FromGuest["/tmp/kept.bin"]) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := c.transfers()
			c.pace(32 << 20) // the transfer runs for a second or more: children run while it does
			defer c.pace(0)
			f, err := os.Open(c.path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, 1<<20)
			if _, err := io.ReadFull(f, head); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := exec.Command("true").Run(); err != nil {
					t.Fatal(err)
				}
			}
			rest, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := append(head, rest...); !bytes.Equal(got, c.want) {
				t.Fatalf("read %d bytes, want the file's %d", len(got), len(c.want))
			}
			if n := c.transfers() - before; n != 1 {
				t.Errorf("%d transfers for one reader whose children ran: a child's flush ended its reads", n)
			}
		})
	}
}
