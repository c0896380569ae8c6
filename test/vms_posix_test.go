package test

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vspherefs/vspherefs/test/sim"
)

// TestVMsPosixDetails: mknod of a regular file creates it in the guest;
// fifos, sockets and devices are EPERM; chmod 0000 is EINVAL (the API
// takes 0 as "unchanged"), as the README's table says.
func TestVMsPosixDetails(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	dir := m.Path("vms", guestVM, "tmp")
	host := filepath.Join(guestHostDir(t, s, guestVM), "tmp")

	if err := unix.Mknod(filepath.Join(dir, "node"), unix.S_IFREG|0o640, 0); err != nil {
		t.Fatalf("mknod of a regular file: %v\n%s", err, m.Log())
	}
	if fi, err := os.Stat(filepath.Join(host, "node")); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("mknod'ed file in the guest: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "node")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mknod'ed file in the mount: %v %v", fi, err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); !errors.Is(err, syscall.EPERM) {
		t.Errorf("mkfifo: %v, want EPERM", err)
	}
	if err := unix.Mknod(filepath.Join(dir, "dev"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))); !errors.Is(err, syscall.EPERM) {
		t.Errorf("mknod of a device: %v, want EPERM", err)
	}
	if l, err := net.Listen("unix", filepath.Join(dir, "sock")); !errors.Is(err, syscall.EPERM) {
		if l != nil {
			l.Close()
		}
		t.Errorf("bind of a unix socket: %v, want EPERM", err)
	}
	for _, name := range []string{"fifo", "dev", "sock"} {
		if _, err := os.Lstat(filepath.Join(host, name)); err == nil {
			t.Errorf("%s made in the guest", name)
		}
	}
	f := filepath.Join(dir, "node")
	if err := os.Chmod(f, 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("chmod 0000: %v, want EINVAL", err)
	}
	if err := os.Chmod(f, 0o600); err != nil {
		t.Errorf("chmod 0600: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(host, "node")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("after chmod 0600: %v %v", fi, err)
	}
}

// TestVMsRsyncDirMtimes: directory mtimes survive rsync -a into a guest
// and back, every time (5 runs), for a tree with a 20 MB file.
func TestVMsRsyncDirMtimes(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	// A long TTL keeps whatever the mount believes: a stale directory
	// time would show in the copy back.
	m := mount(t, s, "--guest-login", sim.GuestLoginString(), "--ttl", "30s")
	for i := range 5 {
		src := filepath.Join(t.TempDir(), "src")
		makeTree(t, src, 61, 20<<20, uint64(10+i))
		dst := m.Path("vms", guestVM, "tmp", fmt.Sprintf("r%d", i))
		run(t, "rsync", "-a", src+"/", dst+"/")
		// An update: files rewritten in place (their folders' times stay)
		// are replaced in the guest by rsync's temporary file and rename.
		var changed []string
		_ = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && (len(changed) < 3 || d.Name() == "big.bin") {
				changed = append(changed, p)
			}
			return nil
		})
		for _, p := range changed {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("changed"), 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
			mt := fi.ModTime().Add(time.Hour)
			if err := os.Chtimes(p, mt, mt); err != nil {
				t.Fatal(err)
			}
		}
		run(t, "rsync", "-a", src+"/", dst+"/")
		run(t, "rsync", "-a", src+"/", dst+"/") // nothing to do: nothing changes
		back := filepath.Join(t.TempDir(), "back")
		run(t, "rsync", "-a", dst+"/", back+"/")
		compareTrees(t, src, back)
		compareTrees(t, src, filepath.Join(guestHostDir(t, s, guestVM), "tmp", fmt.Sprintf("r%d", i)))
		if t.Failed() {
			t.Fatalf("run %d", i)
		}
	}
}
