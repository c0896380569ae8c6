package sim

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var govcBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	if govcBuild.dir != "" {
		os.RemoveAll(govcBuild.dir)
	}
	os.Exit(code)
}

// govcBin builds test/govc once per test binary.
func govcBin(t *testing.T) string {
	t.Helper()
	b := &govcBuild
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "vspherefs-govc-")
		if b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "govc")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", b.bin, "github.com/vspherefs/vspherefs/test/govc")
		b.out, b.err = cmd.CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("building govc: %v\n%s", b.err, b.out)
	}
	return b.bin
}

// govcRunner runs the built govc against the simulator, trusting it by
// thumbprint (a known-hosts file, not -k), so that transfers prove the hosts'
// thumbprints are right.
type govcRunner struct {
	t   *testing.T
	bin string
	env []string
}

func newGovc(t *testing.T, s *Server, vm, login string) *govcRunner {
	known := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(known, []byte(s.URL.Host+" "+s.Thumbprint+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &govcRunner{t: t, bin: govcBin(t), env: append(os.Environ(),
		"GOVC_URL="+s.URL.String(),
		"GOVC_INSECURE=false",
		"GOVC_TLS_KNOWN_HOSTS="+known,
		"GOVC_VM="+vm,
		"GOVC_GUEST_LOGIN="+login,
	)}
}

func (g *govcRunner) run(args ...string) (string, error) {
	g.t.Helper()
	cmd := exec.Command(g.bin, args...)
	cmd.Env = g.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

func (g *govcRunner) must(args ...string) string {
	g.t.Helper()
	out, err := g.run(args...)
	if err != nil {
		g.t.Fatalf("govc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestGovcGuestCommands(t *testing.T) {
	e := newGuestEnv(t)
	g := newGovc(t, e.s, "DC0_H0_VM0", "root:vmware")
	local := t.TempDir()
	host := func(p string) string { return filepath.Join(e.dir, p) }

	// upload, download, overwrite flag
	data := bytes.Repeat([]byte("0123456789"), 300000)
	src := filepath.Join(local, "up.bin")
	os.WriteFile(src, data, 0o644)
	g.must("guest.upload", "-perm", "0640", src, "/tmp/up.bin")
	if b, _ := os.ReadFile(host("tmp/up.bin")); !bytes.Equal(b, data) {
		t.Fatalf("uploaded %d bytes, want %d", len(b), len(data))
	}
	if fi, _ := os.Stat(host("tmp/up.bin")); fi.Mode().Perm() != 0o640 {
		t.Fatalf("upload -perm: %v", fi.Mode())
	}
	if out, err := g.run("guest.upload", src, "/tmp/up.bin"); err == nil || !strings.Contains(out, "FileAlreadyExists") {
		t.Fatalf("upload over existing without -f: %v %s", err, out)
	}
	g.must("guest.upload", "-f", src, "/tmp/up.bin")
	dst := filepath.Join(local, "down.bin")
	g.must("guest.download", "/tmp/up.bin", dst)
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
		t.Fatalf("downloaded %d bytes", len(b))
	}
	if out := g.must("guest.download", "/etc/hostname", "-"); out != "DC0_H0_VM0\n" {
		t.Fatalf("download to stdout: %q", out)
	}
	if out, err := g.run("guest.download", "/etc", filepath.Join(local, "etc")); err == nil || !strings.Contains(out, "NotAFile") {
		t.Fatalf("download of a directory: %v %s", err, out)
	}

	// ls, paged by the server
	e.s.Guest.SetPageSize(2)
	out := g.must("guest.ls", "-s", "/var/log")
	if out != "empty.log\nmessages\nsyslog\n" {
		t.Fatalf("guest.ls -s /var/log:\n%s", out)
	}
	out = g.must("guest.ls", "/home")
	if !strings.Contains(out, "syslog -> ../var/log/syslog") || !strings.Contains(out, "drwxr-xr-x") {
		t.Fatalf("guest.ls /home:\n%s", out)
	}
	if calls := e.s.Guest.Stats().Calls["ListFilesInGuest"]; calls != 3 { // 3 entries: 2 pages; 2 entries: 1 page
		t.Fatalf("ListFilesInGuest calls: %d", calls)
	}

	// mkdir, mv (file and directory), chmod, rm
	g.must("guest.mkdir", "-p", "/tmp/a/b")
	g.must("guest.mkdir", "-p", "/tmp/a/b")
	if _, err := g.run("guest.mkdir", "/tmp/a"); err == nil {
		t.Fatal("mkdir of an existing directory succeeded")
	}
	g.must("guest.mv", "/tmp/up.bin", "/tmp/a/b/moved.bin")
	g.must("guest.mv", "/tmp/a", "/tmp/c")
	if _, err := os.Stat(host("tmp/c/b/moved.bin")); err != nil {
		t.Fatal(err)
	}
	g.must("guest.chmod", "0600", "/tmp/c/b/moved.bin")
	if fi, _ := os.Stat(host("tmp/c/b/moved.bin")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("chmod: %v", fi.Mode())
	}
	g.must("guest.rm", "/tmp/c/b/moved.bin")
	if _, err := os.Stat(host("tmp/c/b/moved.bin")); !os.IsNotExist(err) {
		t.Fatalf("rm: %v", err)
	}

	// touch: create, then set mtime and atime
	g.must("guest.touch", "/tmp/new")
	if fi, err := os.Stat(host("tmp/new")); err != nil || fi.Size() != 0 || time.Since(fi.ModTime()) > time.Minute {
		t.Fatalf("touch new: %v %v", fi, err)
	}
	date := "Mon Jan  2 15:04:05 UTC 2006"
	want, _ := time.Parse(time.UnixDate, date)
	g.must("guest.touch", "-d", date, "/tmp/new")
	g.must("guest.touch", "-a", "-d", date, "/etc/os-release")
	fi, _ := os.Stat(host("tmp/new"))
	if !fi.ModTime().Equal(want) {
		t.Fatalf("touch -d: %v", fi.ModTime())
	}
	fi, _ = os.Stat(host("etc/os-release"))
	st := fi.Sys().(*syscall.Stat_t)
	if !time.Unix(st.Atim.Unix()).Equal(want) || !fi.ModTime().Equal(guestDemoTime) {
		t.Fatalf("touch -a: atime %v mtime %v", time.Unix(st.Atim.Unix()), fi.ModTime())
	}
}

func TestGovcGuestRefusals(t *testing.T) {
	e := newGuestEnv(t)
	bad := newGovc(t, e.s, "DC0_H0_VM0", "root:wrong")
	if out, err := bad.run("guest.ls", "/"); err == nil || !strings.Contains(out, "InvalidGuestLogin") {
		t.Fatalf("wrong password: %v %s", err, out)
	}
	off := newGovc(t, e.s, DemoOffVM, "root:vmware")
	if out, err := off.run("guest.download", "/etc/hostname", "-"); err == nil || !strings.Contains(out, "InvalidPowerState") {
		t.Fatalf("powered-off VM: %v %s", err, out)
	}
}
