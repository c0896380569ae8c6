package test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/test/sim"
)

const ptMetric = "vspherefs_passthrough_files_total"

// cacheLookups is the block cache's hits and misses: every read this process
// answers for a library file moves it, a passthrough read does not.
func cacheLookups(t testing.TB, addr string) float64 {
	m := scrape(t, addr)
	return m["vspherefs_cache_hits_total"] + m["vspherefs_cache_misses_total"]
}

// TestPassthroughLibrarySpool: once a library file's spool holds all of it
// (a stream read to the end), a new open is served by FUSE passthrough: the
// bytes are the server's (read back through govmomi), the mount answers no
// read, a second open shares the backing file, a new version opened while
// the old one is open reads the new bytes through the mount, an open whose
// spool was dropped meanwhile keeps its bytes, and unmount finishes with a
// passthrough file open.
func TestPassthroughLibrarySpool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("FUSE passthrough needs CAP_SYS_ADMIN (go-fuse falls back to plain reads, tested everywhere else)")
	}
	s := sim.StartT(t) // Range ignored: one stream fills the spool
	addr := freePort(t)
	m := mount(t, s, "--metrics", addr, "--ttl", "100ms", "--spool-size", "100MiB")
	p := m.Path("libraries", "demo-library", "big", "big.bin")
	want, err := s.Download(ctx(t), "demo-library", "big", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	f0, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(f0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("cold read: %v, equal %v", err, bytes.Equal(got, want))
	}
	reopenFromPages(t, p, m.CacheDir, addr, want)
	// Without its pages in the kernel's cache, a read that is not
	// passthrough would reach the mount (and its block cache).
	if err := unix.Fadvise(int(f0.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	f0.Close()
	if n := scrape(t, addr)[ptMetric]; n != 0 {
		t.Fatalf("%v passthrough files while the spool was being filled", n)
	}

	f1 := openPassthrough(t, p, addr, 1)
	defer f1.Close()
	lookups := cacheLookups(t, addr)
	got, err := io.ReadAll(f1)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("passthrough read: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, want))
	}
	if st, err := f1.Stat(); err != nil || st.Size() != int64(len(want)) {
		t.Fatalf("fstat of the passthrough file: %v %v", st, err)
	}
	if l := cacheLookups(t, addr); l != lookups {
		t.Errorf("the mount answered reads of a passthrough file (%v cache lookups)", l-lookups)
	}

	// A second open of the same version shares the inode's backing file.
	f2, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if _, err := f2.ReadAt(buf, 32<<20); err != nil || !bytes.Equal(buf, want[32<<20:33<<20]) {
		t.Fatalf("second passthrough open: %v", err)
	}
	f2.Close()

	// A new version, opened while the old passthrough open lasts, is read
	// through the mount: the new bytes, not the old backing file's.
	size := int64(len(want))
	if err := s.UploadFile(ctx(t), itemID(t, s, "demo-library", "big"), "big.bin", sim.DemoBytes("new big.bin", size), size); err != nil {
		t.Fatal(err)
	}
	want2, err := s.Download(ctx(t), "demo-library", "big", "big.bin")
	if err != nil || bytes.Equal(want2, want) {
		t.Fatalf("the server did not change the file: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // --ttl
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want2) {
		t.Fatalf("new version while the old passthrough open lasts: %v, equal %v", err, bytes.Equal(got, want2))
	}
	if _, err := f1.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, want[:1<<20]) {
		t.Fatalf("the old passthrough open lost its version: %v", err)
	}
	// Two 64 MiB spools are over --spool-size: the old version's, idle,
	// is dropped at the next release. The open file keeps its bytes.
	time.Sleep(200 * time.Millisecond)
	if _, err := os.ReadFile(m.Path("libraries", "demo-library", "hello", "hello.txt")); err != nil {
		t.Fatal(err) // a release, which trims the idle spools
	}
	if spools := spoolFiles(t, m.CacheDir); len(spools) != 2 { // the new big.bin, hello.txt
		t.Errorf("spool files: %v; the old version's was not dropped", spools)
	}
	if _, err := f1.ReadAt(buf, 48<<20); err != nil || !bytes.Equal(buf, want[48<<20:49<<20]) {
		t.Fatalf("passthrough read after its spool was dropped: %v", err)
	}
	// Unmount with the passthrough file still open ends (detached lazily).
	m.Unmount(t)
}

// reopenFromPages checks the open that follows a cold read of p. A stream
// writes its spool with direct I/O, so the bytes are in the FUSE inode's
// pages and not in the spool's: the re-open is read from those pages (no
// read reaches the mount), not passed through to the spool on disk. The
// inode's pages are dropped and the spool is read here, so that its pages
// are in memory and it backs passthrough opens.
// TestPassthroughRangedSpool: on an endpoint that honours Range, a read
// from byte 0 is one stream (one GET, with Range) into the spool, so the
// file is then passed through like a streamed one; a read far into it
// before that fetched only its blocks, by Range (TestRangedRandomRead).
func TestPassthroughRangedSpool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("FUSE passthrough needs CAP_SYS_ADMIN (go-fuse falls back to plain reads, tested everywhere else)")
	}
	t.Parallel()
	s := sim.StartT(t)
	s.Library.SetRanges(true)
	addr := freePort(t)
	m := mount(t, s, "--metrics", addr)
	p := m.Path("libraries", "demo-library", "big", "big.bin")
	want, err := s.Download(ctx(t), "demo-library", "big", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	gets0, ranged0, _ := s.Library.Stats()
	f0, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(f0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("cold read: %v, equal %v", err, bytes.Equal(got, want))
	}
	if gets, ranged, _ := s.Library.Stats(); gets-gets0 != 1 || ranged-ranged0 != 1 {
		t.Errorf("a cold read from byte 0 made %d GETs (%d with Range), want one stream with Range", gets-gets0, ranged-ranged0)
	}
	// Re-read from the kernel's pages, then the spool read into memory
	// (as TestPassthroughLibrarySpool): the next open passes through.
	reopenFromPages(t, p, m.CacheDir, addr, want)
	if err := unix.Fadvise(int(f0.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	f0.Close()
	f1 := openPassthrough(t, p, addr, 1)
	defer f1.Close()
	lookups := cacheLookups(t, addr)
	if got, err := io.ReadAll(f1); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("passthrough read: %v, equal %v", err, bytes.Equal(got, want))
	}
	if l := cacheLookups(t, addr); l != lookups {
		t.Errorf("the mount answered reads of a passthrough file (%v cache lookups)", l-lookups)
	}
}

func reopenFromPages(t *testing.T, p, cacheDir, addr string, want []byte) {
	t.Helper()
	spool := largestFile(t, cacheDir)
	if inMemory(t, spool) {
		t.Logf("the spool is in memory: the cache dir's file system refused direct I/O")
		return
	}
	l0, pt0 := cacheLookups(t, addr), scrape(t, addr)[ptMetric]
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("re-read after the cold read: %v, equal %v", err, bytes.Equal(got, want))
	}
	// Its pages dropped: a later read that is not passthrough reaches the mount.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The kernel may have let some of the pages go meanwhile (CI saw 17 of
	// 64 blocks read again once); those reads reach the mount, rightly.
	if l, blocks := cacheLookups(t, addr)-l0, float64(len(want)>>20); l > blocks/2 {
		t.Errorf("the re-read after a cold read reached the mount for %v of %v blocks, not the kernel's pages", l, blocks)
	} else if l > 0 {
		t.Logf("the re-read after a cold read reached the mount for %v of %v blocks", l, blocks)
	}
	if n := scrape(t, addr)[ptMetric]; n != pt0 {
		t.Errorf("the re-read after a cold read was passed through to a spool out of memory (%v files)", n-pt0)
	}
	if _, err := os.ReadFile(spool); err != nil {
		t.Fatal(err)
	}
	if !inMemory(t, spool) {
		t.Fatalf("the spool is not in memory after a read of it")
	}
}

// inMemory reports whether most of a local file's pages are in the page
// cache, as the mount judges it.
func inMemory(t testing.TB, p string) bool {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return cache.InMemory(f)
}

// openPassthrough opens p and waits until the open is passthrough, which
// the mount's metric then counts at n. The kernel sends the release of an
// earlier open after close(2) returns, and until the mount has it, a new
// open is read through the mount (passthrough and page-cache opens of one
// inode cannot mix): such an open is closed and tried again.
func openPassthrough(t *testing.T, p, addr string, n float64) *os.File {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got := scrape(t, addr)[ptMetric]
		if got == n {
			return f
		}
		f.Close()
		if got > n || time.Now().After(deadline) {
			t.Fatalf("open of a complete spool: %v passthrough files, want %v", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// spoolFiles lists the files under a cache dir's spool folders.
func spoolFiles(t *testing.T, cacheDir string) []string {
	var out []string
	matches, _ := filepath.Glob(filepath.Join(cacheDir, "spool-*", "*"))
	for _, p := range matches {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	return out
}

// TestPassthroughExportFiles: package files of a finished export are served
// by passthrough, byte for byte govc's; a disk read while its export still
// runs is not (its reads must be able to fail if the export does), and the
// raw images of disks/ are decoded by the mount.
func TestPassthroughExportFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("FUSE passthrough needs CAP_SYS_ADMIN (go-fuse falls back to plain reads, tested everywhere else)")
	}
	s := sim.StartT(t)
	vm := simVM(t, s, exportVM, true)
	addSmallDisk(t, vm, "pt", 16<<20)
	want := govcPackage(t, s)
	addr := freePort(t)
	m := mount(t, s, "--metrics", addr)
	pkg := m.Path("exports", exportVM)
	if _, err := os.Stat(filepath.Join(pkg, exportVM+".mf")); err != nil { // waits for the end
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "cp")
	run(t, "cp", "-r", pkg, dst)
	samePackage(t, "cp", dst, want)
	if n := scrape(t, addr)[ptMetric]; n != float64(len(want)) {
		t.Errorf("%v passthrough files after cp -r of %d package files", n, len(want))
	}
	img := m.Path("disks", exportVM, "disk-1.img")
	raw, _ := s.Disks.Raw(vm.Reference(), diskKeys(t, vm)[1])
	if st, err := os.Stat(img); err != nil || st.Size() != raw.Size() {
		t.Fatalf("disk-1.img: %v %v, capacity %d", st, err, raw.Size())
	}
	// The first open decodes the stream on each read, and starts decoding
	// the image into the spool; once that is done, opens are passthrough.
	before := scrape(t, addr)[ptMetric]
	decoding, data := seekMap(t, img)
	if err := sim.CompareRawFile(img, raw); err != nil {
		t.Fatalf("disk-1.img decoded per read: %v", err)
	}
	if n := scrape(t, addr)[ptMetric]; n != before {
		t.Errorf("disk image opened by passthrough (%v) before it was decoded into the spool", n-before)
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(m.Log(), "disk image decoded into the spool") {
		if time.Now().After(deadline) {
			t.Fatalf("disk-1.img never decoded into the spool; log:\n%s", m.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := sim.CompareRawFile(img, raw); err != nil {
		t.Fatalf("disk-1.img from the decoded spool: %v", err)
	}
	if n := scrape(t, addr)[ptMetric]; n != before+1 {
		t.Errorf("%v passthrough files for the open of the decoded image, want 1", n-before)
	}
	// Holes and st_blocks stay the stream's: SEEK_DATA/SEEK_HOLE of the
	// passthrough open find the same extents as the decoding one did.
	if got, gotData := seekMap(t, img); !slices.Equal(got, decoding) || gotData != data {
		t.Errorf("decoded image's extents %v (%d bytes), the stream's %v (%d bytes)", got, gotData, decoding, data)
	}
	if st, err := os.Stat(img); err != nil || st.Sys().(*syscall.Stat_t).Blocks*512 >= st.Size() {
		t.Errorf("disk-1.img after decoding: %v %v: holes not shown", st, err)
	}
	if len(decoding) < 2 {
		t.Errorf("disk-1.img has %d extents: the check of holes checks nothing", len(decoding))
	}
}

// seekMap is a file's data extents as SEEK_DATA and SEEK_HOLE find them, and
// their total length.
func seekMap(t testing.TB, p string) ([][2]int64, int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ext [][2]int64
	var n int64
	for off := int64(0); ; {
		start, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			return ext, n
		} else if err != nil {
			t.Fatalf("%s: SEEK_DATA at %d: %v", p, off, err)
		}
		end, err := unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
		if err != nil {
			t.Fatalf("%s: SEEK_HOLE at %d: %v", p, start, err)
		}
		ext = append(ext, [2]int64{start, end})
		n += end - start
		off = end
	}
}

// TestPassthroughGuestSpool: on a read-only mount, once a guest file's
// spool holds all of it, a new open is served by FUSE passthrough (the
// guest's bytes, no read answered by the mount). On a mount that writes,
// it is not (the kernel would refuse every other open of the inode while
// it lasts, a writer's too): a writer opens the file while a reader of the
// complete spool has it open, and its bytes land.
func TestPassthroughGuestSpool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("FUSE passthrough needs CAP_SYS_ADMIN (go-fuse falls back to plain reads, tested everywhere else)")
	}
	s := sim.StartT(t)
	want := putGuestFile(t, s, "/tmp/pt.bin", 24<<20+5)
	// readAll reads p to the end and drops its pages from the kernel's
	// cache, so that a later read that is not passthrough reaches the mount.
	readAll := func(p string) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read: %v, equal %v", err, bytes.Equal(got, want))
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("read-only", func(t *testing.T) {
		addr := freePort(t)
		m := mount(t, s, "--metrics", addr, "--guest-login", sim.GuestLoginString(), "--read-only")
		p := m.Path("vms", guestVM, "tmp", "pt.bin")
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("cold read: %v, equal %v", err, bytes.Equal(got, want))
		}
		reopenFromPages(t, p, m.CacheDir, addr, want)
		f := openPassthrough(t, p, addr, 1)
		defer f.Close()
		lookups := cacheLookups(t, addr)
		if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("passthrough read: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, want))
		}
		if st, err := f.Stat(); err != nil || st.Size() != int64(len(want)) {
			t.Fatalf("fstat of the passthrough file: %v %v", st, err)
		}
		if l := cacheLookups(t, addr); l != lookups {
			t.Errorf("the mount answered reads of a passthrough file (%v cache lookups)", l-lookups)
		}
	})
	t.Run("read-write", func(t *testing.T) {
		addr := freePort(t)
		m := mount(t, s, "--metrics", addr, "--guest-login", sim.GuestLoginString())
		p := m.Path("vms", guestVM, "tmp", "pt.bin")
		readAll(p)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 1<<20)
		if _, err := f.ReadAt(buf, 8<<20); err != nil || !bytes.Equal(buf, want[8<<20:9<<20]) {
			t.Fatalf("read of the complete spool: %v", err)
		}
		if n := scrape(t, addr)[ptMetric]; n != 0 {
			t.Errorf("%v passthrough files on a mount that writes", n)
		}
		data := bytes.Repeat([]byte("rewritten "), 100000)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatalf("write while a reader of the complete spool has the file open: %v", err)
		}
		if got, _ := os.ReadFile(filepath.Join(guestHostDir(t, s, guestVM), "tmp", "pt.bin")); !bytes.Equal(got, data) {
			t.Fatalf("the guest has %d bytes, want the %d written", len(got), len(data))
		}
		// The old version's reader is still open: stat and new opens show
		// the new version all the same (go-fuse hands a stat of the path
		// any open handle; the kernel keeps one size per inode).
		if fi, err := os.Stat(p); err != nil || fi.Size() != int64(len(data)) {
			t.Fatalf("stat after the commit, with an old reader open: %v %v, want %d bytes", fi.Size(), err, len(data))
		}
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("new open after the commit: %d bytes %v, want %d", len(got), err, len(data))
		}
	})
}

// TestPassthroughLargeDirect: a cold read of a file at or over
// --direct-read-size bypasses the kernel's page cache (every read reaches
// the mount), and still gives the server's bytes to read(2), to small
// preads and to a shared mmap; once its spool is complete, the re-open is
// passed through to it (there are no pages of the inode to prefer).
func TestPassthroughLargeDirect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("FUSE passthrough needs CAP_SYS_ADMIN (go-fuse falls back to plain reads, tested everywhere else)")
	}
	s := sim.StartT(t) // Range ignored: one stream fills the spool
	addr := freePort(t)
	m := mount(t, s, "--metrics", addr, "--direct-read-size", "16MiB")
	p := m.Path("libraries", "demo-library", "big", "big.bin")
	want, err := s.Download(ctx(t), "demo-library", "big", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("cold read: %v, equal %v", err, bytes.Equal(got, want))
	}
	// No pages of the inode hold the bytes: reading them again on the
	// same descriptor reaches the mount for every MiB.
	before := cacheLookups(t, addr)
	again := make([]byte, len(want))
	if n, err := f.ReadAt(again, 0); n != len(want) || !bytes.Equal(again, want) {
		t.Fatalf("second read of the descriptor: %d, %v", n, err)
	}
	if l := cacheLookups(t, addr) - before; l < float64(len(want)>>20) {
		t.Fatalf("second read of %d MiB on the descriptor: %v reads reached the mount; the page cache held it", len(want)>>20, l)
	}
	buf := make([]byte, 4096)
	for _, off := range []int64{0, 12345, 33<<20 + 7, int64(len(want)) - 4096} {
		if n, err := f.ReadAt(buf, off); n != len(buf) || !bytes.Equal(buf, want[off:off+4096]) {
			t.Fatalf("pread of 4 KiB at %d: %d, %v", off, n, err)
		}
	}
	// A shared mapping of a direct I/O open (FUSE_DIRECT_IO_ALLOW_MMAP).
	mm, err := unix.Mmap(int(f.Fd()), 0, len(want), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("shared mmap of a large file's direct open: %v", err)
	}
	if !bytes.Equal(mm[40<<20:41<<20], want[40<<20:41<<20]) {
		t.Fatal("the mapping reads other bytes than the server's")
	}
	unix.Munmap(mm)
	f.Close()
	if n := scrape(t, addr)[ptMetric]; n != 0 {
		t.Fatalf("%v passthrough files while the spool was being filled", n)
	}
	f1 := openPassthrough(t, p, addr, 1)
	defer f1.Close()
	lookups := cacheLookups(t, addr)
	if got, err := io.ReadAll(f1); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("re-open after the direct read: %v, equal %v", err, bytes.Equal(got, want))
	}
	if l := cacheLookups(t, addr); l != lookups {
		t.Errorf("the re-open was not passed through: %v cache lookups", l-lookups)
	}
}
