package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runUnmount is `vspherefs unmount MOUNTPOINT`: it unmounts once no file is
// open (a close waiting for its commit keeps a file open, so pending commits
// finish first), then waits for the mount process to commit what it still
// held and exit. If the mount stays busy, it names the processes that hold it.
func runUnmount(args []string) error {
	fl := flag.NewFlagSet("unmount", flag.ExitOnError)
	wait := fl.Duration("wait", 2*time.Minute, "how long to wait for open files and commits")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: vspherefs unmount [--wait 2m] MOUNTPOINT\n")
		fl.PrintDefaults()
	}
	_ = fl.Parse(args)
	if fl.NArg() != 1 {
		fl.Usage()
		os.Exit(2)
	}
	dir, err := filepath.Abs(fl.Arg(0))
	if err != nil {
		return err
	}
	if !isVspherefsMount(dir) {
		return fmt.Errorf("%s is not a vspherefs mount", dir)
	}
	pid := mountPID(dir)
	deadline := time.Now().Add(*wait)
	for {
		err = syscall.Unmount(dir, 0)
		if errors.Is(err, syscall.EPERM) { // not root: the FUSE helper may do it
			if out, ferr := exec.Command("fusermount3", "-u", dir).CombinedOutput(); ferr == nil {
				err = nil
			} else if !strings.Contains(string(out), "busy") {
				return fmt.Errorf("unmount %s: %s", dir, strings.TrimSpace(string(out)))
			} else {
				err = syscall.EBUSY
			}
		}
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		if time.Now().After(deadline) {
			holders := holdersOf(dir)
			if len(holders) == 0 {
				return fmt.Errorf("unmount %s: busy", dir)
			}
			return fmt.Errorf("unmount %s: busy; held by:\n  %s", dir, strings.Join(holders, "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The mount process commits the files it still held, then exits.
	for pid > 0 && alive(pid) {
		if time.Now().After(deadline.Add(*wait)) {
			return fmt.Errorf("unmounted %s, but its process %d is still committing", dir, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// isVspherefsMount says whether /proc/self/mounts has dir as a fuse.vspherefs mount.
func isVspherefsMount(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && unescapeMount(f[1]) == dir && f[2] == "fuse.vspherefs" {
			return true
		}
	}
	return false
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// mountPID asks the mount's status socket for its process id (0: unknown,
// or no answer within 5 s: a hung mount is still unmounted).
func mountPID(dir string) int {
	pid := make(chan int, 1)
	go func() {
		st, err := queryStatus(dir)
		if err != nil {
			pid <- 0
			return
		}
		pid <- st.PID
	}()
	select {
	case p := <-pid:
		return p
	case <-time.After(5 * time.Second):
		return 0
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE …: a zombie has ended.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// holdersOf lists the processes with a file, cwd or root under dir.
func holdersOf(dir string) []string {
	procs, _ := os.ReadDir("/proc")
	var out []string
	under := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		name := strings.TrimSpace(string(comm))
		var paths []string
		for _, l := range []string{"cwd", "root"} {
			if t, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, l)); err == nil && under(t) {
				paths = append(paths, l+" "+t)
			}
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if t, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && under(t) {
				paths = append(paths, t)
			}
		}
		if len(paths) > 0 {
			sort.Strings(paths)
			out = append(out, fmt.Sprintf("pid %d (%s): %s", pid, name, strings.Join(paths, ", ")))
		}
	}
	return out
}
