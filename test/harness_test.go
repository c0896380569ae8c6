// Package test holds the integration tests: each mounts the real vspherefs
// binary (built with -race) in a child process against the embedded
// simulator, and drives the mount with the syscalls and tools users use.
//
// Tests that mostly wait on deadlines (stalls, timeouts, signals) call
// t.Parallel: Go runs them after the sequential tests, at most -parallel
// (GOMAXPROCS) at a time, so they never overlap a test that sets the
// environment (t.Setenv) or drops the kernel's caches.
package test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

var (
	binary string // bin/vspherefs built with -race for the tests
	govc   string // govc built from govmomi's cli packages
)

func TestMain(m *testing.M) {
	flag.Parse()
	race := []string{"-race"}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		race = nil // benchmarks measure the binary users run
	}
	dir, err := os.MkdirTemp("", "vspherefs-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "vspherefs")
	govc = filepath.Join(dir, "govc")
	for _, b := range [][]string{
		append(append([]string{"build"}, race...), "-o", binary, "../cmd/vspherefs"),
		{"build", "-o", govc, "./govc"},
	} {
		cmd := exec.Command("go", b...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build failed:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Mount is a running `vspherefs mount` child process.
type Mount struct {
	Dir      string
	CacheDir string
	cmd      *exec.Cmd
	log      *syncBuffer
	done     chan struct{}
	exitErr  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mount starts vspherefs against s and waits until libraries/ can be stat'ed.
// It unmounts in cleanup, even when the test fails.
func mount(t testing.TB, s *sim.Server, args ...string) *Mount {
	t.Helper()
	ca, err := s.CertificateFile()
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := s.URL.User.Password()
	// Credentials through the environment, as the README recommends.
	env := []string{"GOVC_USERNAME=" + s.URL.User.Username(), "GOVC_PASSWORD=" + pass, "GOVC_URL="}
	return mountWith(t, s, env, append([]string{"--ca-certs", ca}, args...)...)
}

// mountWith mounts with the given environment and flags (no CA or login added).
func mountWith(t testing.TB, s *sim.Server, env []string, args ...string) *Mount {
	t.Helper()
	return mountWithHook(t, s, env, nil, args...)
}

// mountWithHook is mountWith, calling before(mountpoint) before it starts.
func mountWithHook(t testing.TB, s *sim.Server, env []string, before func(dir string), args ...string) *Mount {
	t.Helper()
	m := &Mount{Dir: t.TempDir(), CacheDir: t.TempDir(), log: &syncBuffer{}, done: make(chan struct{})}
	if before != nil {
		before(m.Dir)
	}
	u := *s.URL
	u.User = nil
	all := append([]string{"mount", "--url", u.String(), "--cache-dir", m.CacheDir}, args...)
	m.cmd = exec.Command(binary, append(all, m.Dir)...)
	m.cmd.Env = append(append(os.Environ(), "GORACE=halt_on_error=1"), env...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.exitErr = m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		m.Unmount(t)
		if t.Failed() {
			t.Logf("vspherefs log:\n%s", m.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(m.Dir, "libraries")); err == nil {
			return m
		}
		select {
		case <-m.done:
			t.Fatalf("vspherefs exited: %v\n%s", m.exitErr, m.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount not ready\n%s", m.log.String())
		}
	}
}

// Unmount stops the child with SIGTERM and checks it exits 0 with no stale mount.
func (m *Mount) Unmount(t testing.TB) {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(60 * time.Second):
		_ = m.cmd.Process.Kill()
		_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
		<-m.done
		t.Errorf("vspherefs did not exit after SIGTERM")
	}
	if m.exitErr != nil {
		t.Errorf("vspherefs exited with %v", m.exitErr)
	}
	if mounted(m.Dir) {
		_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)
		t.Errorf("stale mount left at %s", m.Dir)
	}
	if strings.Contains(m.log.String(), "WARNING: DATA RACE") {
		t.Errorf("data race in vspherefs:\n%s", m.log.String())
	}
}

// Log is what the child has logged so far.
func (m *Mount) Log() string { return m.log.String() }

// WaitLog waits briefly for text in the log: a log line can arrive through
// the pipe just after the syscall that caused it has returned.
func (m *Mount) WaitLog(text ...string) bool {
	for range 100 {
		all := true
		for _, t := range text {
			all = all && strings.Contains(m.Log(), t)
		}
		if all {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Path joins elements under the mountpoint.
func (m *Mount) Path(elem ...string) string {
	return filepath.Join(append([]string{m.Dir}, elem...)...)
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mounts")
	return strings.Contains(string(b), " "+dir+" ")
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

// run runs a command and returns its combined output, failing the test on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
