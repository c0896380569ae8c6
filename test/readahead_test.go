package test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vspherefs/vspherefs/test/sim"
)

// TestReadAheadRaised: the mount raises its device's read-ahead (128 KiB
// by default, which caps FUSE's max_readahead) to 1 MiB, so a sequential
// read through the page cache reaches it as 1 MiB requests: a 64 MiB `cat`
// makes a block lookup or two per MiB, not the eight of 128 KiB requests.
func TestReadAheadRaised(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the device's read_ahead_kb is root's to set (others keep the kernel's 128 KiB)")
	}
	t.Parallel()
	s := sim.StartT(t)
	addr := freePort(t)
	m := mount(t, s, "--metrics", addr)
	var st syscall.Stat_t
	if err := syscall.Stat(m.Dir, &st); err != nil {
		t.Fatal(err)
	}
	sysfs := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if b, err := os.ReadFile(sysfs); err != nil || strings.TrimSpace(string(b)) != "1024" {
		t.Fatalf("%s: %q, %v; want 1024", sysfs, b, err)
	}
	want, err := s.Download(ctx(t), "demo-library", "big", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	before := cacheLookups(t, addr)
	got := run(t, "cat", m.Path("libraries", "demo-library", "big", "big.bin"))
	if !bytes.Equal([]byte(got), want) {
		t.Fatalf("cat: %d bytes, want the server's %d", len(got), len(want))
	}
	mib := float64(len(want) >> 20)
	if l := cacheLookups(t, addr) - before; l > 3*mib {
		t.Errorf("a sequential read of %v MiB made %v block lookups: the kernel's requests are smaller than 1 MiB", mib, l)
	} else {
		t.Logf("%v block lookups for %v MiB", l, mib)
	}
}
