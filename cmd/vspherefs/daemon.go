package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Background mode (--daemon, and the mount.fuse.vspherefs helper): the
// command starts itself again as a session leader and returns only when that
// child says the filesystem answers (exit 0), or with the child's one-line
// error and its exit status. The child's stderr comes back through a pipe
// until it is ready (flag errors, login and TLS failures show on the
// caller's terminal); from then on it logs to --log-file or syslog, never to
// a terminal that may be closed.

const daemonEnv = "VSPHEREFS_DAEMON_FD" // the child's end of the ready pipe

// isDaemonChild is read once: the variable is not passed on to what the
// mount runs, and fd 3 must be the pipe the parent made.
var isDaemonChild = func() bool {
	v := os.Getenv(daemonEnv)
	os.Unsetenv(daemonEnv)
	var st syscall.Stat_t
	return v == "3" && syscall.Fstat(3, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFIFO
}()

func daemonChild() bool { return isDaemonChild }

// runDaemon starts `vspherefs mount ARGS` (ARGS without --daemon) in the
// background and waits for it to be ready or to fail.
func runDaemon(args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, append([]string{"mount"}, args...)...)
	cmd.Args[0] = "vspherefs" // not the helper's name, whatever called us
	cmd.Env = append(os.Environ(), daemonEnv+"=3")
	cmd.Stdout, cmd.Stderr = errW, errW
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		return err
	}
	readyW.Close()
	errW.Close()
	relayed := make(chan struct{})
	go func() { _, _ = io.Copy(os.Stderr, errR); close(relayed) }()
	line, _ := bufio.NewReader(readyR).ReadString('\n')
	readyR.Close()
	if strings.TrimSpace(line) == "READY" {
		select { // the child hands its stderr to the log right after
		case <-relayed:
		case <-time.After(2 * time.Second):
		}
		go func() { _ = cmd.Wait() }() // not ours to wait for; let it run
		return nil
	}
	err = cmd.Wait()
	<-relayed
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode()) // the child has said why on stderr
	}
	return fmt.Errorf("the mount process ended before the filesystem answered: %v", err)
}

// daemonReady tells the waiting parent that the mount answers, then moves
// stdout and stderr off the parent's pipe: to the log file, or /dev/null.
func daemonReady() {
	if !daemonChild() {
		return
	}
	ready := os.NewFile(3, "ready")
	_, _ = ready.WriteString("READY\n")
	ready.Close()
	target := "/dev/null"
	if ops.logFile != "" {
		target = ops.logFile
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	_ = syscall.Dup2(int(f.Fd()), 1)
	_ = syscall.Dup2(int(f.Fd()), 2) // a panic lands in the log file
	f.Close()
}

// waitAnswers waits until the mountpoint answers a lookup through the
// kernel, the readiness the helper, --daemon and READY=1 promise.
func waitAnswers(mountpoint string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := os.Stat(filepath.Join(mountpoint, "libraries"))
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mounted but %s does not answer: %w", mountpoint, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// splitDaemon says whether args ask for --daemon, and returns them without it.
func splitDaemon(args []string) (bool, []string) {
	var rest []string
	daemon := false
	for i, a := range args {
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		switch a {
		case "--daemon", "-daemon", "--daemon=true", "-daemon=true":
			daemon = true
			continue
		case "--daemon=false", "-daemon=false":
			continue
		}
		rest = append(rest, a)
	}
	return daemon, rest
}

// flagValue finds --name VALUE or --name=VALUE in args (before the mountpoint).
func flagValue(args []string, name string) string {
	for i, a := range args {
		for _, p := range []string{"--" + name, "-" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	return ""
}

// mountCommand is `vspherefs mount`: background mode, the credentials file
// (read before the flags take their defaults from the environment), then the mount.
func mountCommand(args []string) error {
	if daemon, rest := splitDaemon(args); daemon && !daemonChild() {
		return runDaemon(rest)
	}
	if c := flagValue(args, "credentials"); c != "" {
		if err := loadCredentials(c); err != nil {
			return err
		}
	}
	return runMount(args)
}
