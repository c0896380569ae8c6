package test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vspherefs/vspherefs/test/sim"
)

// BenchmarkSpoolPassthrough compares, in one run, a cold cp out of a file
// whose spool is complete (a library file, a guest file: served by FUSE
// passthrough) with a cold cp of the spool file itself from the cache dir's
// disk: both with the spool's pages dropped first, both into /dev/shm.
// mount-lookups counts the reads the mount answered during the passthrough
// cp (0 when passthrough served it).
func BenchmarkSpoolPassthrough(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("FUSE passthrough needs CAP_SYS_ADMIN")
	}
	size := benchSize()
	b.Run("library", func(b *testing.B) {
		s := sim.StartT(b) // Range ignored: one stream fills the spool
		c := context.Background()
		lib, _ := s.CreateLibrary(c, "bench")
		item, _ := s.CreateItem(c, lib, "file")
		if err := s.UploadFile(c, item, "data.bin", sim.DemoBytes("bench", size), size); err != nil {
			b.Fatal(err)
		}
		addr := freePort(b)
		m := mount(b, s, "--cache-size", "512MiB", "--metrics", addr)
		benchSpooled(b, m, addr, m.Path("libraries", "bench", "file", "data.bin"), size)
	})
	b.Run("guest", func(b *testing.B) {
		s := sim.StartT(b)
		putGuestFile(b, s, "/tmp/bench.bin", size)
		addr := freePort(b)
		m := mount(b, s, "--cache-size", "512MiB", "--metrics", addr, "--guest-login", sim.GuestLoginString(), "--read-only") // guest files are passed through on read-only mounts
		benchSpooled(b, m, addr, m.Path("vms", guestVM, "tmp", "bench.bin"), size)
	})
	b.Run("disk", benchDiskImage)
}

// benchDiskImage compares a cold cp of disks/<vm>/disk-1.img (after its
// first read, which decodes the stream and starts decoding it into the
// spool) with a cold cp of the same image made by qemu-img convert from the
// spooled stream, a sparse file on the cache dir's disk. Both copies skip
// the holes (cp finds them with SEEK_DATA/SEEK_HOLE): MB/s are of the data.
func benchDiskImage(b *testing.B) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		b.Skip("qemu-img is missing (Debian's qemu-utils): no peer for the disk image")
	}
	s := sim.StartT(b)
	vm := simVM(b, s, exportVM, true)
	addSmallDisk(b, vm, "bench", benchSize())
	addr := freePort(b)
	m := mount(b, s, "--metrics", addr)
	img := m.Path("disks", exportVM, "disk-1.img")
	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
	f.Close()
	decoded := 0.0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(m.Log(), "disk image decoded into the spool") {
			decoded = 1
			break
		}
	}
	streams, _ := filepath.Glob(filepath.Join(m.CacheDir, "*", "exports", "*", "*-disk-1.vmdk"))
	if len(streams) != 1 {
		b.Fatalf("spooled streams of disk 1: %v", streams)
	}
	peer := filepath.Join(b.TempDir(), "disk-1.raw")
	run(b, "qemu-img", "convert", "-f", "vmdk", "-O", "raw", streams[0], peer)
	st, err := os.Stat(peer)
	if err != nil {
		b.Fatal(err)
	}
	data := st.Sys().(*syscall.Stat_t).Blocks * 512
	shm := filepath.Join("/dev/shm", "vspherefs-bench-img")
	defer os.Remove(shm)
	// The decoded image (where this tree makes one) is cold too.
	decodedFile := streams[0] + ".raw"
	if _, err := os.Stat(decodedFile); err != nil {
		decodedFile = ""
	}
	var disk, mnt time.Duration
	pt0 := scrape(b, addr)[ptMetric]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dropFile(b, peer)
		disk += timeCmd(b, "cp", peer, shm)
		dropPages(b, img)
		if decodedFile != "" {
			dropFile(b, decodedFile)
		}
		mnt += timeCmd(b, "cp", img, shm)
		if got, _ := os.Stat(shm); got == nil || got.Size() != st.Size() {
			b.Fatalf("cp out of the mount: %v bytes, want %d", got, st.Size())
		}
	}
	n := int64(b.N) * data
	b.ReportMetric(mbps(n, disk), "qemu-raw-disk-MB/s")
	b.ReportMetric(mbps(n, mnt), "mount-MB/s")
	b.ReportMetric(disk.Seconds()/mnt.Seconds(), "mount/disk")
	b.ReportMetric(float64(data)/(1<<20), "data-MiB")
	b.ReportMetric(decoded, "decoded")
	b.ReportMetric(scrape(b, addr)[ptMetric]-pt0, "passthrough-files")
}

// benchSpooled reads p once (filling its spool), then times cold cps of the
// spool file and of p.
func benchSpooled(b *testing.B, m *Mount, addr, p string, size int64) {
	// The cold read fills the spool; its pages in the FUSE inode are
	// dropped, so that a read not served by passthrough would reach us.
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	f.Close()
	spool := largestFile(b, m.CacheDir)
	shm := filepath.Join("/dev/shm", "vspherefs-bench-pt")
	defer os.Remove(shm)
	time.Sleep(100 * time.Millisecond) // the kernel's release of the cold read's open
	// A stream's spool is written with direct I/O, so the first re-open
	// trusts the inode's pages; they were dropped, so its reads reach the
	// mount (from the spool on disk), and later opens are passed through.
	dropFile(b, spool)
	miss := timeCmd(b, "cp", p, shm)
	dropPages(b, p)
	time.Sleep(100 * time.Millisecond)
	var disk, pt time.Duration
	var lookups float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dropFile(b, spool)
		disk += timeCmd(b, "cp", spool, shm)
		dropFile(b, spool)
		dropPages(b, p) // the FUSE inode's pages, if a read through us left any
		l0 := cacheLookups(b, addr)
		pt += timeCmd(b, "cp", p, shm)
		lookups += cacheLookups(b, addr) - l0
		if got, _ := os.Stat(shm); got == nil || got.Size() != size {
			b.Fatalf("cp out of the mount: %v bytes, want %d", got, size)
		}
	}
	n := int64(b.N) * size
	b.ReportMetric(mbps(n, disk), "spool-disk-MB/s")
	b.ReportMetric(mbps(n, pt), "passthrough-MB/s")
	b.ReportMetric(disk.Seconds()/pt.Seconds(), "passthrough/disk")
	b.ReportMetric(lookups, "mount-lookups")
	b.ReportMetric(mbps(size, miss), "first-reopen-MB/s")
	b.ReportMetric(scrape(b, addr)[ptMetric], "passthrough-files")
}

// largestFile is the biggest regular file under dir (a spool).
func largestFile(b testing.TB, dir string) string {
	var best string
	var max int64
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > max {
			best, max = p, fi.Size()
		}
		return nil
	})
	if best == "" {
		b.Fatal("no spool file")
	}
	return best
}

// dropPages drops a file's clean pages from the page cache (a FUSE file:
// no fsync, which a passthrough inode refuses).
func dropPages(b testing.TB, p string) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

// dropFile drops a local file's pages from the page cache.
func dropFile(b testing.TB, p string) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}
