package main

// The mountpoint before and after the mount: checked before any login,
// detached lazily rather than ever left dead.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point, fstype string
}

// mountsAt lists the mounts whose mountpoint is dir (absolute), last mounted last.
func mountsAt(dir string) []mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 {
			continue
		}
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) {
			continue
		}
		if unescapeMountinfo(fields[4]) == dir {
			out = append(out, mountEntry{point: dir, fstype: fields[sep+1]})
		}
	}
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkMountpoint says, in one line, why dir cannot be mounted on: it is
// missing, not a directory, or already a FUSE mount (live or dead).
func checkMountpoint(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	fi, statErr := os.Stat(abs)
	if errors.Is(statErr, syscall.ENOTCONN) {
		return fmt.Errorf("mountpoint %s: a dead FUSE mount is left there (transport endpoint is not connected); run umount -l %s", dir, dir)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	for _, m := range mountsAt(abs) {
		if m.fstype == "fuse.vspherefs" {
			return fmt.Errorf("mountpoint %s: already a vspherefs mount; umount %s first", dir, dir)
		}
		if strings.HasPrefix(m.fstype, "fuse") {
			return fmt.Errorf("mountpoint %s: already a FUSE mount (%s); umount %s first", dir, m.fstype, dir)
		}
	}
	switch {
	case errors.Is(statErr, os.ErrNotExist):
		return fmt.Errorf("mountpoint %s does not exist (mkdir it first)", dir)
	case statErr != nil:
		return fmt.Errorf("mountpoint %s: %w", dir, statErr)
	case !fi.IsDir():
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	return nil
}

// detach unmounts dir lazily (MNT_DETACH): it leaves the tree at once and
// the kernel drops it when the last open file is closed.
func detach(dir string) error {
	if os.Geteuid() == 0 {
		return syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(bin); err == nil {
			out, err := exec.Command(p, "-u", "-z", dir).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s -u -z: %v: %s", bin, err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	return errors.New("no fusermount3 to unmount with")
}

// detachIfMounted removes a vspherefs mount a failed mount may have left at dir.
func detachIfMounted(dir string) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	for _, m := range mountsAt(abs) {
		if m.fstype == "fuse.vspherefs" {
			_ = detach(abs)
		}
	}
}

// openUnder lists the processes that hold a file (or their working
// directory) under dir, as "pid N (comm): path", for the log.
func openUnder(dir string) []string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	procs, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	var out []string
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil || p.Name() == self {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
		links := []string{filepath.Join("/proc", p.Name(), "cwd")}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			links = append(links, filepath.Join("/proc", p.Name(), "fd", fd.Name()))
		}
		for _, l := range links {
			t, err := os.Readlink(l)
			if err == nil && (t == abs || strings.HasPrefix(t, abs+"/")) {
				out = append(out, fmt.Sprintf("pid %s (%s): %s", p.Name(), strings.TrimSpace(string(comm)), t))
			}
		}
	}
	return out
}

// fuseConn names dir's FUSE connection in /sys/fs/fuse/connections (its
// device number); "" if dir is not a mount root of ours.
func fuseConn(dir string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return ""
	}
	return strconv.FormatUint(st.Dev, 10)
}

// abortConn aborts a detached mount's FUSE connection, so that the files
// still open on it fail at once (ENOTCONN) instead of reaching a process
// that is shutting down. Without fusectl it does nothing: the exit does it.
func abortConn(id string) bool {
	if id == "" {
		return false
	}
	f, err := os.OpenFile(filepath.Join("/sys/fs/fuse/connections", id, "abort"), os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.WriteString("1")
	return err == nil
}
