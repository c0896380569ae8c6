package test

import (
	"bytes"
	bin "encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/test/sim"
)

// dirents lists a folder as getdents64 gives it: names and inode numbers in
// readdir order, without a stat of any entry (a stat would start an export).
func dirents(t *testing.T, dir string) (names []string, inos []uint64) {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return names, inos
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := bin.NativeEndian.Uint16(b[16:18])
			name := string(b[19:reclen])
			name = name[:strings.IndexByte(name, 0)]
			if name != "." && name != ".." {
				names = append(names, name)
				inos = append(inos, bin.NativeEndian.Uint64(b[0:8]))
			}
			b = b[reclen:]
		}
	}
}

// TestExportsDiskEarly: a stat of a disk returns as soon as that disk is
// spooled and checked against its manifest entry, while the lease goes on
// for the next disk; its bytes are govc's; the .ovf and .mf wait for the end.
// The disks come first in readdir and in inode order (cp and tar copy in
// inode order).
func TestExportsDiskEarly(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	vm := simVM(t, s, exportVM, true)
	addSmallDisk(t, vm, "small", 40<<20)
	want := govcPackage(t, s)
	// One disk at a time, as govc does: disk 0 is served while disk 1 goes on.
	m := mount(t, s, "--max-transfers", "1")
	pkg := m.Path("exports", exportVM)
	vmdk0 := exportVM + "-disk-0.vmdk"

	order := []string{vmdk0, exportVM + "-disk-1.vmdk", exportVM + ".ovf", exportVM + ".mf"}
	listed, inos := dirents(t, pkg)
	if strings.Join(listed, " ") != strings.Join(order, " ") {
		t.Errorf("readdir order %v, want %v", listed, order)
	}
	for i := 1; i < len(inos); i++ {
		if inos[i] <= inos[i-1] {
			t.Errorf("inodes %v: not ascending in listing order", inos)
		}
	}
	if imgs, _ := dirents(t, m.Path("disks", exportVM)); strings.Join(imgs, " ") != "disk-0.img disk-1.img" {
		t.Errorf("disks/ readdir order %v", imgs)
	}
	if n := s.Exports.LeasesCreated(); n != 1 {
		t.Fatalf("%d leases: listing started an export (govc's is the one)", n)
	}

	s.Exports.Throttle(2 << 20) // disk 0 takes about 4 s, disk 1 about 1 s
	ovfDone := make(chan error, 1)
	go func() {
		_, err := os.Stat(filepath.Join(pkg, exportVM+".ovf"))
		ovfDone <- err
	}()
	start := time.Now()
	st, err := os.Stat(filepath.Join(pkg, vmdk0))
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if n := s.Exports.ActiveLeases(); n != 1 {
		t.Errorf("disk 0 stat returned after %v with %d active leases: it waited for the whole export", took, n)
	}
	select {
	case err := <-ovfDone:
		t.Errorf("the .ovf stat returned (%v) before the export ended", err)
	default:
	}
	img, err := os.Stat(m.Path("disks", exportVM, "disk-0.img"))
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Exports.ActiveLeases(); n != 1 {
		t.Errorf("disk-0.img stat: %d active leases", n)
	}
	raw, _ := s.Disks.Raw(vm.Reference(), diskKeys(t, vm)[0])
	if img.Size() != raw.Size() {
		t.Errorf("disk-0.img: size %d, capacity %d", img.Size(), raw.Size())
	}
	t.Logf("disk 0 (%d bytes) served after %v, the export still running", st.Size(), took)
	if !m.WaitLog("served while the export goes on") {
		t.Errorf("log does not say disk 0 is served early")
	}

	// Its bytes, read while the export goes on, are govc's.
	b, err := os.ReadFile(filepath.Join(pkg, vmdk0))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != st.Size() || !bytes.Equal(b, want[vmdk0]) {
		t.Errorf("%s: %d bytes (stat said %d) differ from govc's %d", vmdk0, len(b), st.Size(), len(want[vmdk0]))
	}

	if err := <-ovfDone; err != nil {
		t.Fatal(err)
	}
	if s.Exports.LeasesCreated() != 2 || s.Exports.ActiveLeases() != 0 {
		t.Errorf("leases: %d created (govc's and ours), %d active", s.Exports.LeasesCreated(), s.Exports.ActiveLeases())
	}
	s.Exports.Throttle(0)
	dst := filepath.Join(t.TempDir(), "cp")
	run(t, "cp", "-r", pkg, dst)
	samePackage(t, "cp", dst, want)
	checkManifest(t, dst, exportVM+".mf")
	// The stat of disk 0 before the end and after it agree (tar checks).
	st2, err := os.Stat(filepath.Join(pkg, vmdk0))
	if err != nil {
		t.Fatal(err)
	}
	if st2.Size() != st.Size() || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("disk 0 stat changed at the end of the export: %d %v, then %d %v", st.Size(), st.ModTime(), st2.Size(), st2.ModTime())
	}
}

// TestExportsFailAfterServed: a disk served early whose export then fails
// (the next disk disagrees with the manifest) is no longer served: reads of
// an open file fail with EIO, the log says why, and a new stat fails too.
func TestExportsFailAfterServed(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	vm := simVM(t, s, exportVM, true)
	addSmallDisk(t, vm, "small", 40<<20)
	// One disk at a time: disk 0 is served while disk 1 still transfers.
	m := mount(t, s, "--max-transfers", "1")
	pkg := m.Path("exports", exportVM)
	vmdk0 := filepath.Join(pkg, exportVM+"-disk-0.vmdk")

	s.Exports.Throttle(2 << 20)
	f, err := os.Open(vmdk0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.Exports.Corrupt(true) // disk 1 is transferring: it fails the manifest check
	if n := s.Exports.ActiveLeases(); n != 1 {
		t.Fatalf("disk 0 open with %d active leases", n)
	}
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("read of disk 0 while the export goes on: %v", err)
	}
	if _, err := os.Stat(filepath.Join(pkg, exportVM+".mf")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("stat of the .mf: %v, want EIO", err)
	}
	if !m.WaitLog("HttpNfcLeaseGetManifest", "export failed") {
		t.Errorf("log does not say the export failed on the manifest")
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	// The last bytes: far from what the kernel may have read ahead.
	if _, err := f.ReadAt(buf[:100], st.Size()-100); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of disk 0 after its export failed: %v, want EIO", err)
	}
	if !m.WaitLog("export failed after this file was served") {
		t.Errorf("log does not say why the read failed")
	}
	if _, err := os.Stat(vmdk0); !errors.Is(err, syscall.EIO) {
		t.Errorf("stat of disk 0 after the export failed: %v, want EIO", err)
	}
	if s.Exports.ActiveLeases() != 0 {
		t.Errorf("a lease is left")
	}
}
