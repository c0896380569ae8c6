package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

// mountInos mounts with the guest inode table swept after every sweep new
// entries, forgotten nodes kept grace, and the sweeps logged.
func mountInos(t *testing.T, s *sim.Server, sweep int, grace time.Duration) *Mount {
	return mount(t, s, "--guest-login", sim.GuestLoginString(), "--debug",
		"--test-ino-sweep", strconv.Itoa(sweep), "--test-ino-grace", grace.String())
}

var sweptRe = regexp.MustCompile(`guest inode table swept" before=(\d+) after=(\d+)`)

// sweeps are the table's sizes before and after each sweep so far.
func sweeps(m *Mount) (before, after []int) {
	for _, s := range sweptRe.FindAllStringSubmatch(m.Log(), -1) {
		b, _ := strconv.Atoi(s[1])
		a, _ := strconv.Atoi(s[2])
		before, after = append(before, b), append(after, a)
	}
	return before, after
}

// dropCaches makes the kernel forget the inodes nobody uses (FORGET), or
// reports false where it may not.
func dropCaches() bool {
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0) == nil
}

// replaceScript is sh that defines replace N PREFIX TARGETS: N times,
// write "round I" to a temporary name and rename it over PREFIX(I%TARGETS),
// as rsync does; and drop, which makes the kernel forget the inodes nobody
// uses (FORGET), where it may. The test process itself does not make these
// calls: its own preemption signals interrupt a close, which is then EIO.
const replaceScript = `
replace() {
	i=0
	while [ $i -lt $1 ]; do
		t=$2$((i % $3))
		printf 'round %d\n' $i > .$t.tmp$i || exit 1
		mv -f .$t.tmp$i $t || exit 1
		i=$((i + 1))
	done
}
drop() { echo 2 2>/dev/null > /proc/sys/vm/drop_caches; }
`

// shIn runs a script after replaceScript in dir, and returns its output.
// sh changes to dir itself: a chdir between fork and exec would wait on
// the mount, whose simulator runs in this process, under the fork lock.
func shIn(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", "cd \"$1\" || exit 1\n"+replaceScript+script, "sh", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sh: %v\n%s", err, out)
	}
	return string(out)
}

// TestVMsInoTableBounded: thousands of rsync-like replacements (write a
// temporary name, rename it over the target) keep the table of renamed
// and removed nodes near the number of nodes the kernel holds, not two
// entries per operation; once the kernel forgets them, it empties. Every
// target has its last bytes and no temporary file is left.
func TestVMsInoTableBounded(t *testing.T) {
	s := sim.StartT(t)
	m := mountInos(t, s, 64, 50*time.Millisecond)
	dir := m.Path("vms", guestVM, "tmp", "inos")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n, targets = 300, 20
	start := time.Now()
	shIn(t, dir, fmt.Sprintf("replace %d f %d", n, targets))
	t.Logf("%d replacements in %v", n, time.Since(start).Round(time.Millisecond))
	before, after := sweeps(m)
	t.Logf("sweeps: before %v after %v", before, after)
	if len(before) < 3 {
		t.Fatalf("%d sweeps for %d replacements", len(before), n)
	}
	// The kernel holds about one node per target; a table that grew by an
	// entry or two per replacement would be 300-600.
	if biggest := largest(before); biggest > 8*targets {
		t.Errorf("table reached %d entries for %d live files", biggest, targets)
	}

	if dropCaches() {
		time.Sleep(100 * time.Millisecond) // past the grace
		shIn(t, dir, "replace 200 g 2")
		_, after := sweeps(m)
		t.Logf("after the kernel forgot: %v", after)
		if last := after[len(after)-1]; last > 16 {
			t.Errorf("after the kernel forgot the nodes, the table keeps %d entries", last)
		}
	} else {
		t.Log("cannot drop the kernel's caches: not checking the table empties")
	}

	host := filepath.Join(guestHostDir(t, s, guestVM), "tmp", "inos")
	entries, err := os.ReadDir(host)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name()[0] == '.' {
			t.Errorf("temporary file left in the guest: %s", e.Name())
		}
	}
	for i := n - targets; i < n; i++ {
		name := fmt.Sprintf("f%d", i%targets)
		b, err := os.ReadFile(filepath.Join(host, name))
		if want := fmt.Sprintf("round %d\n", i); err != nil || string(b) != want {
			t.Errorf("guest %s: %q %v, want %q", name, b, err, want)
		}
	}
}

// largest is the largest of v, or zero.
func largest(v []int) int {
	z := 0
	for _, x := range v {
		z = max(z, x)
	}
	return z
}

// TestVMsInoOpenRemovedFile: a file open for writing and removed (by
// unlink, or by a rename over it and an unlink) keeps its number through
// sweeps, and through the kernel forgetting every other node, while open;
// so a new file made at its path is another node: its bytes reach the
// guest, and the removed file's go nowhere.
func TestVMsInoOpenRemovedFile(t *testing.T) {
	s := sim.StartT(t)
	m := mountInos(t, s, 16, 10*time.Millisecond)
	dir := m.Path("vms", guestVM, "tmp", "open")
	host := filepath.Join(guestHostDir(t, s, guestVM), "tmp", "open")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"rm a", "replace 1 a 1; rm a"} {
		t.Run(how, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "a"), []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			sweptBefore, _ := sweeps(m)
			// churn: sweeps, with the kernel's unused nodes forgotten.
			out := shIn(t, dir, `churn() { for k in 1 2 3 4 5; do replace 20 c 3; drop; sleep 0.02; done; }
exec 3>a
printf A1 >&3
a=$(stat -L -c %i /dev/fd/3)
`+how+`
churn
exec 4>a
printf B1 >&4
printf A2 >&3
churn
printf B2 >&4
printf A3 >&3
echo $a $(stat -L -c %i /dev/fd/3) $(stat -L -c %i /dev/fd/4) $(stat -c %i a)
exec 3>&-
exec 4>&-
cat a
`)
			if swept, _ := sweeps(m); len(swept) < len(sweptBefore)+4 {
				t.Errorf("%d sweeps while the removed file was open", len(swept)-len(sweptBefore))
			}
			lines := strings.Split(out, "\n")
			inos := strings.Fields(lines[0])
			if len(inos) != 4 || inos[0] != inos[1] || inos[2] != inos[3] || inos[0] == inos[2] {
				t.Errorf("numbers: removed file at open, and later, new file by fd, and by path: %v", inos)
			}
			if len(lines) < 2 || lines[1] != "B1B2" {
				t.Errorf("the mount reads %q for the new file, want B1B2", lines[1:])
			}
			if b, err := os.ReadFile(filepath.Join(host, "a")); err != nil || string(b) != "B1B2" {
				t.Errorf("the guest has %q %v for the new file, want B1B2", b, err)
			}
		})
	}
}
