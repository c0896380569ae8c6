package test

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSimCommand: `vspherefs sim` reports a busy port in one line (no
// panic), has a usage line, prints the guest login it accepts, and its
// --fault switch reaches the wire (govc sees the injected 503).
func TestSimCommand(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out, err := exec.Command(binary, "sim", "--listen", l.Addr().String()).CombinedOutput()
	if err == nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), "--listen") ||
		!strings.Contains(string(out), "address already in use") || strings.Contains(string(out), "panic") {
		t.Errorf("busy port: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "sim", "-h").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "Usage: vspherefs sim [flags]") || !strings.Contains(string(out), "-fault") || !strings.Contains(string(out), "-range") {
		t.Errorf("sim -h: %v\n%s", err, out)
	}
	if out, err := exec.Command(binary, "sim", "--fault", "GET /x=sometimes").CombinedOutput(); err == nil || !strings.Contains(string(out), "--fault") {
		t.Errorf("bad --fault: %v\n%s", err, out)
	}

	cmd := exec.Command(binary, "sim", "--listen", "127.0.0.1:0", "--range", "--fault", "POST /sdk=503")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var govcURL, guest string
	timeout := time.After(60 * time.Second)
	for govcURL == "" || guest == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("sim exited")
			}
			if v, ok := strings.CutPrefix(line, "GOVC_URL="); ok {
				govcURL = v
			}
			if v, ok := strings.CutPrefix(line, "GOVC_GUEST_LOGIN="); ok {
				guest = v
			}
		case <-timeout:
			t.Fatal("sim printed no GOVC_URL and GOVC_GUEST_LOGIN")
		}
	}
	if guest != "root:vmware" {
		t.Errorf("guest login %q", guest)
	}
	g := exec.Command(govc, "about")
	g.Env = append(os.Environ(), "GOVC_URL="+govcURL, "GOVC_INSECURE=1")
	out, err = g.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "503") {
		t.Errorf("govc about with POST /sdk=503: %v\n%s", err, out)
	}
}
