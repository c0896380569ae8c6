package test

// Running vspherefs as a service: the mount(8) helper with a credentials
// file, --daemon, systemd's $NOTIFY_SOCKET, `vspherefs unmount`, JSON logs.

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

// helperBinary links the binary as mount.fuse.vspherefs, the name mount(8) runs.
func helperBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mount.fuse.vspherefs")
	if err := os.Symlink(binary, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// credentialsFile writes a GOVC_* credentials file with the given mode.
func credentialsFile(t *testing.T, s *sim.Server, pass string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vc.cred")
	body := "# vCenter login\nGOVC_USERNAME=" + s.URL.User.Username() + "\nGOVC_PASSWORD=" + pass + "\n"
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// background is a mount process that its starter no longer waits for.
type background struct {
	dir, logFile string
	pid          int
}

// pidFromLog finds the pid the mount logged with "mounted".
func pidFromLog(t *testing.T, logFile string) int {
	t.Helper()
	b, _ := os.ReadFile(logFile)
	m := regexp.MustCompile(`msg=mounted .*pid=(\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no pid in the log:\n%s", b)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return pid
}

// cleanupBackground unmounts and stops a background mount whatever happened.
func cleanupBackground(t *testing.T, b *background) {
	t.Cleanup(func() {
		if mounted(b.dir) {
			_ = syscall.Unmount(b.dir, syscall.MNT_DETACH)
		}
		if b.pid > 0 && processAlive(b.pid) {
			_ = syscall.Kill(b.pid, syscall.SIGKILL)
		}
		if t.Failed() && b.logFile != "" {
			log, _ := os.ReadFile(b.logFile)
			t.Logf("vspherefs log:\n%s", log)
		}
	})
}

func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitExit(t *testing.T, pid int) {
	t.Helper()
	for range 600 {
		if !processAlive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("mount process %d still runs", pid)
}

// mountSource is the field /proc/self/mounts shows as the source of dir.
func mountSource(dir string) (source, fstype string) {
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == dir {
			return f[0], f[2]
		}
	}
	return "", ""
}

// The helper, called as mount(8) calls it (SOURCE DIR -o OPTIONS, with
// fstab's and systemd's options), logs in from a credentials file, returns
// only once the filesystem answers, shows the vCenter host as the source,
// and `umount` ends the background process.
func TestOpsHelperMountsWithCredentialsFile(t *testing.T) {
	s := sim.StartT(t, sim.Options{Demo: true, Login: url.UserPassword("backup", "Zq9-s3cret word")})
	ca, err := s.CertificateFile()
	if err != nil {
		t.Fatal(err)
	}
	b := &background{dir: t.TempDir(), logFile: filepath.Join(t.TempDir(), "vspherefs.log")}
	cleanupBackground(t, b)
	pass, _ := s.URL.User.Password()
	cred := credentialsFile(t, s, pass, 0o600)
	opts := strings.Join([]string{"credentials=" + cred, "ca_certs=" + ca, "cache_dir=" + t.TempDir(),
		"log_file=" + b.logFile, "ttl=2s", "timeout=30s", "_netdev", "nofail", "x-systemd.automount",
		"x-systemd.requires=network-online.target", "rw", "defaults", "noauto", "user", "users", "nosuid", "nodev"}, ",")
	cmd := exec.Command(helperBinary(t), s.URL.Host, b.dir, "-o", opts)
	cmd.Env = append(os.Environ(), "GOVC_USERNAME=", "GOVC_PASSWORD=", "GOVC_URL=", "GORACE=halt_on_error=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if strings.Contains(strings.Join(cmd.Args, " "), pass) {
		t.Fatalf("the password is on the command line")
	}
	// Ready when it returned: no waiting here.
	if _, err := os.Stat(filepath.Join(b.dir, "libraries", "demo-library")); err != nil {
		t.Fatalf("the helper returned before the mount answers: %v", err)
	}
	b.pid = pidFromLog(t, b.logFile)
	if src, typ := mountSource(b.dir); src != s.URL.Host || typ != "fuse.vspherefs" {
		t.Errorf("/proc/mounts shows %q %q, want %q fuse.vspherefs", src, typ, s.URL.Host)
	}
	got, err := os.ReadFile(filepath.Join(b.dir, "libraries", "demo-library", "hello", "hello.txt"))
	want, _ := io.ReadAll(sim.DemoBytes("demo-library/hello/hello.txt", 22))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read through the helper's mount: %v", err)
	}
	if log, _ := os.ReadFile(b.logFile); bytes.Contains(log, []byte(pass)) {
		t.Errorf("the password is in the log")
	}
	if err := syscall.Unmount(b.dir, 0); err != nil {
		t.Fatalf("umount: %v", err)
	}
	waitExit(t, b.pid)
	if mounted(b.dir) {
		t.Errorf("still mounted after umount")
	}
}

// A credentials file others can read, or a password in -o, is refused before
// anything is mounted, with one line saying why.
func TestOpsHelperRefusesExposedSecrets(t *testing.T) {
	s := sim.StartT(t, sim.Options{Demo: true, Login: url.UserPassword("backup", "Zq9-s3cret")})
	ca, err := s.CertificateFile()
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := s.URL.User.Password()
	dir := t.TempDir()
	for _, c := range []struct {
		name, opts, want string
	}{
		{"world-readable file", "credentials=" + credentialsFile(t, s, pass, 0o644) + ",ca_certs=" + ca, "chmod 600"},
		{"password in -o", "password=" + pass + ",ca_certs=" + ca, "credentials=FILE"},
		{"unknown option", "ca_certs=" + ca + ",frobnicate", "frobnicate"},
	} {
		cmd := exec.Command(helperBinary(t), s.URL.Host, dir, "-o", c.opts)
		cmd.Env = append(os.Environ(), "GOVC_USERNAME=", "GOVC_PASSWORD=", "GOVC_URL=")
		out, err := cmd.CombinedOutput()
		if err == nil {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
			t.Fatalf("%s: mounted", c.name)
		}
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: want one line naming %q, got:\n%s", c.name, c.want, out)
		}
		if strings.Contains(string(out), pass) {
			t.Errorf("%s: the error shows the password", c.name)
		}
		if mounted(dir) {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
			t.Errorf("%s: left a mount", c.name)
		}
	}
}

// `vspherefs mount --daemon` with a wrong password exits non-zero with the
// login error on one line, and mounts nothing.
func TestOpsDaemonBadPassword(t *testing.T) {
	s := sim.StartT(t)
	ca, err := s.CertificateFile()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	u := *s.URL
	u.User = nil
	cmd := exec.Command(binary, "mount", "--daemon", "--url", u.String(), "--ca-certs", ca, "--cache-dir", t.TempDir(), dir)
	cmd.Env = append(os.Environ(), "GOVC_USERNAME="+s.URL.User.Username(), "GOVC_PASSWORD=wrong-password")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("--daemon did not return")
	}
	if err == nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		t.Fatalf("--daemon with a wrong password exited 0:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(strings.ToLower(lines[0]), "login") {
		t.Errorf("want one line naming the login failure, got:\n%s", out)
	}
	if strings.Contains(string(out), "wrong-password") {
		t.Errorf("the error shows the password")
	}
	if mounted(dir) {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		t.Errorf("a mount was left behind")
	}
}

// Under systemd (Type=notify) READY=1 comes only once the mount answers,
// and STOPPING=1 on the way out.
func TestOpsNotifyReadyAfterMountAnswers(t *testing.T) {
	s := sim.StartT(t)
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type msg struct {
		text     string
		answered bool
	}
	msgs := make(chan msg, 16)
	dirc := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			text := string(buf[:n])
			answered := false
			if strings.Contains(text, "READY=1") {
				d := <-dirc
				dirc <- d
				_, err := os.Stat(filepath.Join(d, "libraries", "demo-library"))
				answered = err == nil
			}
			msgs <- msg{text, answered}
		}
	}()
	m := mountWithDir(t, s, func(d string) { dirc <- d }, "NOTIFY_SOCKET="+sock)
	var ready msg
	select {
	case ready = <-msgs:
	case <-time.After(30 * time.Second):
		t.Fatal("no READY=1 on $NOTIFY_SOCKET")
	}
	if !strings.Contains(ready.text, "READY=1") || !ready.answered {
		t.Fatalf("first message %q (mount answering: %v); want READY=1 once it answers", ready.text, ready.answered)
	}
	if !strings.Contains(ready.text, "STATUS=") {
		t.Errorf("READY=1 without a STATUS= line: %q", ready.text)
	}
	m.Unmount(t)
	stopping := false
	for !stopping {
		select {
		case x, ok := <-msgs:
			if !ok {
				t.Fatal("socket closed before STOPPING=1")
			}
			stopping = strings.Contains(x.text, "STOPPING=1")
		case <-time.After(10 * time.Second):
			t.Fatal("no STOPPING=1 at unmount")
		}
	}
}

// mountWithDir is mount() with extra environment, telling the mountpoint
// before the mount starts.
func mountWithDir(t *testing.T, s *sim.Server, before func(dir string), env ...string) *Mount {
	t.Helper()
	ca, err := s.CertificateFile()
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := s.URL.User.Password()
	e := append([]string{"GOVC_USERNAME=" + s.URL.User.Username(), "GOVC_PASSWORD=" + pass, "GOVC_URL="}, env...)
	return mountWithHook(t, s, e, before, "--ca-certs", ca)
}

// `vspherefs unmount` waits for the mount to be free, unmounts it and waits
// for its process to end; while a file is held open past --wait it names the
// process that holds it.
func TestOpsUnmountCommand(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	f, err := os.Open(m.Path("libraries", "demo-library", "hello", "hello.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "unmount", "--wait", "300ms", m.Dir).CombinedOutput()
	if err == nil {
		t.Fatalf("unmount with a file open succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(string(out), "hello.txt") {
		t.Errorf("the error does not name the holder (pid %d, hello.txt):\n%s", os.Getpid(), out)
	}
	f.Close()
	if out, err := exec.Command(binary, "unmount", m.Dir).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	select {
	case <-m.done:
	default:
		t.Fatal("unmount returned before the mount process ended")
	}
	if m.exitErr != nil {
		t.Errorf("mount exited with %v\n%s", m.exitErr, m.Log())
	}
}

// --log-format json: every log line is one JSON object.
func TestOpsLogFormatJSON(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--log-format", "json", "--debug")
	if _, err := os.ReadFile(m.Path("libraries", "demo-library", "hello", "hello.txt")); err != nil {
		t.Fatal(err)
	}
	m.Unmount(t)
	lines := strings.Split(strings.TrimSpace(m.Log()), "\n")
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "GOVC_") { // printed by --sim only
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if v["msg"] == nil || v["level"] == nil || v["time"] == nil {
			t.Errorf("JSON line without time, level or msg: %q", l)
		}
		n++
	}
	if n < 2 || !strings.Contains(m.Log(), `"msg":"mounted"`) || !strings.Contains(m.Log(), `"msg":"transfer"`) {
		t.Errorf("want the mounted line and --debug's transfer lines, got:\n%s", m.Log())
	}
	if regexp.MustCompile(`[?&](token|id)=`).MatchString(m.Log()) {
		t.Errorf("a transfer URL's query reached the log:\n%s", m.Log())
	}
}

// --uid, --gid and --umask set what vspherefs makes up; the -o forms are the same flags.
func TestOpsOwnerAndUmask(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--uid", "1234", "--gid", "5678", "--umask", "027")
	for _, c := range []struct {
		path string
		mode uint32
	}{
		{m.Path("libraries", "demo-library"), syscall.S_IFDIR | 0o750},
		{m.Path("libraries", "demo-library", "hello", "hello.txt"), syscall.S_IFREG | 0o640},
	} {
		var st syscall.Stat_t
		if err := syscall.Stat(c.path, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 1234 || st.Gid != 5678 || st.Mode != c.mode {
			t.Errorf("%s: uid %d gid %d mode %o, want 1234 5678 %o", c.path, st.Uid, st.Gid, st.Mode, c.mode)
		}
	}
}

// `mount --daemon` returns once the mount answers; with no --cache-dir the
// cache dir is a subfolder of the default for this vCenter and user; the
// log goes to --log-file; `vspherefs unmount` ends it.
func TestOpsDaemonDefaultCacheDir(t *testing.T) {
	s := sim.StartT(t)
	ca, err := s.CertificateFile()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	b := &background{dir: t.TempDir(), logFile: filepath.Join(t.TempDir(), "log")}
	cleanupBackground(t, b)
	u := *s.URL
	u.User = nil
	pass, _ := s.URL.User.Password()
	cmd := exec.Command(binary, "mount", "--daemon", "--url", u.String(), "--ca-certs", ca, "--log-file", b.logFile, b.dir)
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+home, "GOVC_USERNAME="+s.URL.User.Username(), "GOVC_PASSWORD="+pass, "GORACE=halt_on_error=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount --daemon: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(b.dir, "libraries", "demo-library")); err != nil {
		t.Fatalf("--daemon returned before the mount answers: %v", err)
	}
	b.pid = pidFromLog(t, b.logFile)
	out, err := exec.Command(binary, "status", "--json", b.dir).Output()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st struct {
		CacheDir string `json:"cache_dir"`
		PID      int    `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	wantDir := filepath.Join(home, "vspherefs", s.URL.Host, s.URL.User.Username())
	if st.CacheDir != wantDir || st.PID != b.pid {
		t.Errorf("status says cache dir %q pid %d; want %q pid %d", st.CacheDir, st.PID, wantDir, b.pid)
	}
	if fi, err := os.Stat(wantDir); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("cache dir %s: %v %v", wantDir, fi, err)
	}
	if out, err := exec.Command(binary, "unmount", b.dir).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	if processAlive(b.pid) || mounted(b.dir) {
		t.Errorf("after unmount: process alive %v, mounted %v", processAlive(b.pid), mounted(b.dir))
	}
	if log, _ := os.ReadFile(b.logFile); !bytes.Contains(log, []byte("msg=unmounted")) {
		t.Errorf("the log file does not end with the unmount:\n%s", log)
	}
}

// --log-level warn keeps INFO lines out; --log-level with a bad value is one error line.
func TestOpsLogLevel(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--log-level", "warn")
	if _, err := os.ReadFile(m.Path("libraries", "demo-library", "hello", "hello.txt")); err != nil {
		t.Fatal(err)
	}
	m.Unmount(t)
	if strings.Contains(m.Log(), "level=INFO") {
		t.Errorf("INFO lines with --log-level warn:\n%s", m.Log())
	}
	out, err := exec.Command(binary, "mount", "--log-level", "loud", t.TempDir()).CombinedOutput()
	if err == nil || strings.TrimSpace(string(out)) != `vspherefs: --log-level "loud": want debug, info, warn or error` {
		t.Errorf("bad --log-level: %v %q", err, out)
	}
}

// `vspherefs version` names the module and says where the revision is.
func TestOpsVersion(t *testing.T) {
	out := run(t, binary, "version")
	if !strings.HasPrefix(out, "vspherefs ") || !strings.Contains(out, "module github.com/vspherefs/vspherefs@") || !strings.Contains(out, "revision ") {
		t.Errorf("version: %q", out)
	}
}
