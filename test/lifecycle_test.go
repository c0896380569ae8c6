package test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

// simEnv is the environment mount() gives the child, plus extra.
func simEnv(t testing.TB, s *sim.Server, extra ...string) (env []string, ca string) {
	t.Helper()
	ca, err := s.CertificateFile()
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := s.URL.User.Password()
	env = []string{"GOVC_USERNAME=" + s.URL.User.Username(), "GOVC_PASSWORD=" + pass, "GOVC_URL="}
	return append(env, extra...), ca
}

// runBinary runs vspherefs to completion (it must not mount) and returns its
// exit code and output.
func runBinary(t testing.TB, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("vspherefs %s did not exit:\n%s", strings.Join(args, " "), out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func demoBytes(t testing.TB, path string, size int64) []byte {
	b, err := io.ReadAll(sim.DemoBytes(path, size))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCacheDirShared: two mounts on one --cache-dir, both reading and
// writing, with the garbage collector forced all the time: neither touches
// the other's spool or staged files, and both commit their writes.
func TestCacheDirShared(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	cacheDir := t.TempDir()
	env, ca := simEnv(t, s, "VSPHEREFS_TEST_GC=10ms")
	args := []string{"--ca-certs", ca, "--cache-dir", cacheDir, "--guest-login", sim.GuestLoginString()}
	a := mountWith(t, s, env, args...)

	// a: a guest file half written (staged), and a library file read (spooled).
	dataA := randBytes(1, 3<<20)
	g, err := os.Create(a.Path("vms", guestVM, "tmp", "from-a.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Write(dataA[:1<<20]); err != nil {
		t.Fatal(err)
	}
	lib := a.Path("libraries", "demo-library", "multi", "b.bin")
	want := demoBytes(t, "demo-library/multi/b.bin", 4<<20+1)
	if got, err := os.ReadFile(lib); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a: read %d bytes, %v", len(got), err)
	}
	time.Sleep(300 * time.Millisecond) // many collections in a
	spoolsBefore, _ := filepath.Glob(filepath.Join(cacheDir, "spool-*"))

	b := mountWith(t, s, env, args...)
	if spools, _ := filepath.Glob(filepath.Join(cacheDir, "spool-*")); len(spools) != len(spoolsBefore)+1 {
		t.Fatalf("spools with two mounts: %v (before the second: %v)\n%s", spools, spoolsBefore, b.Log())
	}
	if staged, _ := filepath.Glob(filepath.Join(cacheDir, "recovery", "staging-*")); len(staged) > 0 {
		t.Fatalf("the second mount moved the first one's staged files: %v\n%s", staged, b.Log())
	}
	// b writes too, both trees.
	dataB := randBytes(2, 200000)
	if err := os.WriteFile(b.Path("libraries", "demo-library", "hello", "from-b.bin"), dataB, 0o644); err != nil {
		t.Fatalf("b: library write: %v\n%s", err, b.Log())
	}
	if err := os.WriteFile(b.Path("vms", guestVM, "tmp", "from-b.bin"), dataB, 0o644); err != nil {
		t.Fatalf("b: guest write: %v\n%s", err, b.Log())
	}
	time.Sleep(200 * time.Millisecond)

	// a finishes its write and reads again from its spool.
	if _, err := g.Write(dataA[1<<20:]); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("a: close of the staged guest file: %v\n%s", err, a.Log())
	}
	dropPageCache(t, lib)
	if got, err := os.ReadFile(lib); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a: re-read %d bytes, %v\n%s", len(got), err, a.Log())
	}
	host := guestHostDir(t, s, guestVM)
	for name, want := range map[string][]byte{"from-a.bin": dataA, "from-b.bin": dataB} {
		if got, err := os.ReadFile(filepath.Join(host, "tmp", name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("guest %s: %d bytes, %v", name, len(got), err)
		}
	}
	if got, err := s.Download(ctx(t), "demo-library", "hello", "from-b.bin"); err != nil || !bytes.Equal(got, dataB) {
		t.Errorf("library from-b.bin: %d bytes, %v", len(got), err)
	}
	a.Unmount(t)
	b.Unmount(t)
	if rest, _ := filepath.Glob(filepath.Join(cacheDir, "spool-*")); len(rest) > 0 {
		t.Errorf("spools left after both unmounted: %v", rest)
	}
}

// TestCacheDirRefused: a cache dir other users can write, or one with a
// symlink planted where vspherefs keeps its files, is refused in one line
// before anything is created through it.
func TestCacheDirRefused(t *testing.T) {
	s := sim.StartT(t)
	env, ca := simEnv(t, s)
	u := *s.URL
	u.User = nil
	mnt := t.TempDir()

	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	code, out := runBinary(t, env, "mount", "--url", u.String(), "--ca-certs", ca, "--cache-dir", open, mnt)
	if code == 0 || !strings.Contains(out, "writable by other users") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
		t.Errorf("world-writable cache dir: exit %d, %q", code, out)
	}

	planted := t.TempDir()
	victim := t.TempDir()
	if err := os.Symlink(victim, filepath.Join(planted, "staging")); err != nil {
		t.Fatal(err)
	}
	code, out = runBinary(t, env, "mount", "--url", u.String(), "--ca-certs", ca, "--cache-dir", planted, mnt)
	if code == 0 || !strings.Contains(out, "symlink") {
		t.Errorf("planted staging symlink: exit %d, %q", code, out)
	}
	if ents, _ := os.ReadDir(victim); len(ents) > 0 {
		t.Errorf("vspherefs wrote through the planted symlink: %v", ents)
	}
	if mounted(mnt) {
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Error("mounted despite the refusal")
	}
}

// TestMountpointChecks: a missing mountpoint, a regular file and a path
// that is already mounted are refused in one line, before the login, and
// leave no mount behind.
func TestMountpointChecks(t *testing.T) {
	s := sim.StartT(t)
	env, ca := simEnv(t, s)
	u := *s.URL
	u.User = nil
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := mount(t, s)
	cases := map[string]struct{ dir, want string }{
		"missing": {filepath.Join(t.TempDir(), "nosuch"), "does not exist"},
		"file":    {file, "not a directory"},
		"mounted": {m.Dir, "already a vspherefs mount"},
	}
	for name, c := range cases {
		// A wrong password proves the check comes first: a login would fail otherwise.
		bad := append(append([]string(nil), env...), "GOVC_PASSWORD=wrong")
		code, out := runBinary(t, bad, "mount", "--url", u.String(), "--ca-certs", ca, "--cache-dir", t.TempDir(), c.dir)
		if code == 0 || !strings.Contains(out, c.want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("%s: exit %d, %q, want one line with %q", name, code, out, c.want)
		}
	}
	if mounted(file) {
		_ = syscall.Unmount(file, syscall.MNT_DETACH)
		t.Error("a mount was left on the regular file")
	}
	if n := strings.Count(mountinfo(), " "+m.Dir+" "); n != 1 {
		t.Errorf("%d mounts at %s, want 1", n, m.Dir)
	}
	if _, err := os.Stat(m.Path("libraries", "demo-library")); err != nil {
		t.Errorf("the first mount after the refused second: %v", err)
	}
}

func mountinfo() string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return string(b)
}

// TestFlagErrors: each mistake on the command line is one line naming the
// flag and what is wrong, exit status 2, before any login.
func TestFlagErrors(t *testing.T) {
	mnt := t.TempDir()
	glf := filepath.Join(t.TempDir(), "logins")
	if err := os.WriteFile(glf, []byte("no equals sign here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"GOVC_URL=https://u:p@127.0.0.1:1/sdk", "GOVC_INSECURE=", "GOVC_TLS_CA_CERTS="}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{mnt, "--debug"}, []string{"--debug", "after the mountpoint"}},
		{[]string{"--insecure", "--thumbprint", "AA:BB", mnt}, []string{"--insecure", "--thumbprint", "conflict"}},
		{[]string{"--insecure", "--ca-certs", "/etc/hostname", mnt}, []string{"--insecure", "--ca-certs", "conflict"}},
		{[]string{"--password", "x", "--password-file", "/dev/null", mnt}, []string{"--password", "--password-file"}},
		{[]string{"--guest-login-file", glf, mnt}, []string{"--guest-login-file", "logins:1"}},
		{[]string{"--guest-login-file", "/nonexistent/x", mnt}, []string{"--guest-login-file"}},
		{[]string{"--guest-login", "nocolon", mnt}, []string{"--guest-login:", "USER:PASS"}},
		{[]string{"--cache-size", "lots", mnt}, []string{"--cache-size"}},
		{[]string{"--ttl", "soon", mnt}, []string{"-ttl"}},
		{[]string{"--no-such-flag", mnt}, []string{"-no-such-flag", "not defined"}},
		{[]string{}, []string{"no MOUNTPOINT"}},
		{[]string{"--sim", "--url", "x", mnt}, []string{"--sim", "--url"}},
	}
	for _, c := range cases {
		code, out := runBinary(t, env, append([]string{"mount", "--cache-dir", t.TempDir()}, c.args...)...)
		line := strings.TrimSpace(out)
		ok := code == 2 && !strings.Contains(line, "\n")
		for _, w := range c.want {
			ok = ok && strings.Contains(line, w)
		}
		if !ok {
			t.Errorf("mount %s: exit %d, %q; want exit 2, one line with %q", strings.Join(c.args, " "), code, out, c.want)
		}
	}
	// The help names the environment variable of the password.
	_, out := runBinary(t, nil, "mount", "-h")
	if !strings.Contains(out, "$GOVC_PASSWORD") || !strings.Contains(out, "Usage: vspherefs mount") {
		t.Errorf("mount -h:\n%s", out)
	}
}

// TestLibraryDatastoreChecked: --library-datastore names a datastore that
// exists, or the mount is refused after the login, in one line.
func TestLibraryDatastoreChecked(t *testing.T) {
	s := sim.StartT(t)
	env, ca := simEnv(t, s)
	u := *s.URL
	u.User = nil
	mnt := t.TempDir()
	code, out := runBinary(t, env, "mount", "--url", u.String(), "--ca-certs", ca, "--cache-dir", t.TempDir(), "--library-datastore", "nosuch", mnt)
	if code == 0 || !strings.Contains(out, "--library-datastore nosuch") || !strings.Contains(out, "no datastore") {
		t.Errorf("exit %d, %q", code, out)
	}
	if mounted(mnt) {
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Error("mounted despite the refusal")
	}
	m := mount(t, s, "--library-datastore", "LocalDS_0")
	if err := os.Mkdir(m.Path("libraries", "on-ds0"), 0o755); err != nil {
		t.Fatalf("mkdir with a named datastore: %v\n%s", err, m.Log())
	}
}

// TestSigtermWithOpenFile: SIGTERM while a file is held open ends the
// mount promptly, exit 0, with the mount detached (never dead) and the
// holder named in the log.
func TestSigtermWithOpenFile(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	p := m.Path("libraries", "demo-library", "hello", "hello.txt")
	holder := exec.Command("sleep", "60")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	holder.Stdin = f
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	m.Unmount(t) // SIGTERM; checks exit 0 and no mount left
	if !strings.Contains(m.Log(), "detached lazily") || !strings.Contains(m.Log(), "(sleep): "+p) {
		t.Errorf("the log does not name the open file:\n%s", m.Log())
	}
	if _, err := os.Stat(m.Dir); err != nil {
		t.Errorf("mountpoint after the exit: %v", err)
	}
}

// TestSecondSignalForces: a commit that takes long holds the first SIGTERM
// (it waits for the commit); a second one stops the wait, the mount is
// detached and the bytes are kept in recovery/.
func TestSecondSignalForces(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	s.Updates.SetPutDelay(8 * time.Second) // longer than the test takes to send both signals
	defer s.Updates.SetPutDelay(0)
	cp := exec.Command("sh", "-c", `head -c 100000 /dev/zero > "$1"`, "sh", m.Path("libraries", "demo-library", "hello", "slow.bin"))
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cp.Process.Kill(); _ = cp.Wait() }()
	time.Sleep(time.Second) // the writer is in close(), its commit in the PUT
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	if !m.WaitLog("unmounting") {
		t.Fatalf("no unmounting line:\n%s", m.Log())
	}
	select {
	case <-m.done:
		t.Fatalf("exited while a commit was running:\n%s", m.Log())
	case <-time.After(time.Second):
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit after the second signal:\n%s", m.Log())
	}
	if !strings.Contains(m.Log(), "second signal") {
		t.Errorf("no log line for the second signal:\n%s", m.Log())
	}
	if mounted(m.Dir) {
		_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
		t.Errorf("mount left after the forced exit")
	}
	m.exitErr = nil // a failed commit may make it non-zero; the bytes are what matters
	rec, _ := filepath.Glob(filepath.Join(m.CacheDir, "recovery", "libraries", "demo-library", "hello", "slow.bin*"))
	if len(rec) == 0 {
		t.Errorf("the interrupted commit's bytes are not in recovery/:\n%s", m.Log())
	}
}
