package test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

// mountFails runs `vspherefs mount` expecting it to refuse, and returns its output.
func mountFails(t *testing.T, s *sim.Server, env []string, args ...string) string {
	t.Helper()
	u := *s.URL
	u.User = nil
	dir := t.TempDir()
	cmd := exec.Command(binary, append(append([]string{"mount", "--url", u.String(), "--cache-dir", t.TempDir()}, args...), dir)...)
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
		t.Fatalf("mount %v did not give up", args)
	}
	if err == nil {
		t.Fatalf("mount %v succeeded, want a refusal:\n%s", args, out)
	}
	if mounted(dir) {
		t.Fatalf("mount %v left a mount behind", args)
	}
	return string(out)
}

// TestTLS: verification is on by default; --thumbprint pins; --insecure is explicit.
func TestTLS(t *testing.T) {
	s := sim.StartT(t)
	pass, _ := s.URL.User.Password()
	login := []string{"GOVC_USERNAME=" + s.URL.User.Username(), "GOVC_PASSWORD=" + pass, "GOVC_URL=", "GOVC_INSECURE="}

	out := mountFails(t, s, login)
	if !strings.Contains(out, "certificate") || !strings.Contains(out, s.Thumbprint) {
		t.Errorf("unverifiable server: want a certificate error naming the thumbprint, got:\n%s", out)
	}
	out = mountFails(t, s, login, "--thumbprint", strings.Repeat("AB:", 19)+"AB")
	if !strings.Contains(strings.ToLower(out), "thumbprint") && !strings.Contains(out, "certificate") {
		t.Errorf("wrong thumbprint: want a thumbprint error, got:\n%s", out)
	}
	for _, o := range []string{out} {
		if strings.Contains(o, pass) {
			t.Errorf("password in output:\n%s", o)
		}
	}

	// The right thumbprint, and --insecure, both mount.
	for _, args := range [][]string{{"--thumbprint", s.Thumbprint}, {"--insecure"}} {
		m := mountWith(t, s, login, args...)
		if _, err := os.ReadFile(m.Path("libraries", "demo-library", "hello", "hello.txt")); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		m.Unmount(t)
	}
}

// TestSecretsStayOut: with --debug, a wrong password and the URL form, the
// password never reaches the logs or error messages.
func TestSecretsStayOut(t *testing.T) {
	s := sim.StartT(t)
	ca, _ := s.CertificateFile()
	const secret = "s3cr3t-Pa55"
	out := mountFails(t, s, []string{"GOVC_USERNAME=user", "GOVC_PASSWORD=" + secret}, "--ca-certs", ca, "--debug")
	if strings.Contains(out, secret) {
		t.Fatalf("password in output:\n%s", out)
	}
	if !strings.Contains(strings.ToLower(out), "login") {
		t.Errorf("want a login error, got:\n%s", out)
	}
	u := *s.URL
	u.User = nil
	pf := t.TempDir() + "/pw"
	if err := os.WriteFile(pf, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = mountFails(t, s, []string{"GOVC_URL=", "GOVC_PASSWORD="}, "--ca-certs", ca, "--url", "https://user:"+secret+"@"+u.Host+"/sdk", "--debug")
	if strings.Contains(out, secret) {
		t.Fatalf("password from the URL in output:\n%s", out)
	}
	out = mountFails(t, s, []string{"GOVC_URL=", "GOVC_PASSWORD=", "GOVC_USERNAME=user"}, "--ca-certs", ca, "--password-file", pf)
	if strings.Contains(out, secret) {
		t.Fatalf("password from the file in output:\n%s", out)
	}

	// A working mount with --debug logs its calls without the password.
	m := mount(t, s, "--debug")
	if _, err := os.ReadFile(m.Path("libraries", "demo-library", "hello", "hello.txt")); err != nil {
		t.Fatal(err)
	}
	pass, _ := s.URL.User.Password()
	if !strings.Contains(m.Log(), "msg=api") || strings.Contains(m.Log(), ":"+pass+"@") || strings.Contains(m.Log(), "password="+pass) {
		t.Fatalf("debug log has no calls, or holds the password:\n%s", m.Log())
	}
}

// TestExitPaths: the mount exits 0 with no stale mount after SIGINT and after
// `umount MOUNTPOINT`, as it does after SIGTERM (every other test's cleanup).
func TestExitPaths(t *testing.T) {
	s := sim.StartT(t)
	for _, how := range []string{"SIGINT", "umount"} {
		m := mount(t, s)
		if _, err := os.ReadFile(m.Path("libraries", "demo-library", "hello", "hello.txt")); err != nil {
			t.Fatal(err)
		}
		if how == "SIGINT" {
			_ = m.cmd.Process.Signal(os.Interrupt)
		} else {
			run(t, "umount", m.Dir)
		}
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: vspherefs did not exit", how)
		}
		if m.exitErr != nil {
			t.Errorf("%s: exit %v\n%s", how, m.exitErr, m.Log())
		}
		if mounted(m.Dir) {
			t.Errorf("%s: stale mount", how)
		}
		ids, err := s.DownloadSessions(ctx(t))
		if err != nil || len(ids) != 0 {
			t.Errorf("%s: download sessions left: %v %v", how, ids, err)
		}
	}
}
