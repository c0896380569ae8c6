package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"golang.org/x/sys/unix"

	vfs "github.com/vspherefs/vspherefs/fs"
	"github.com/vspherefs/vspherefs/test/sim"
)

// TestListingMatchesAPI: names, sizes and st_blocks agree with govmomi's library API.
func TestListingMatchesAPI(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	c := ctx(t)
	_, rc, err := s.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	lm := library.NewManager(rc)
	libs, err := lm.GetLibraries(c)
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, l := range libs {
		want = append(want, l.Name)
		items, err := lm.GetLibraryItems(c, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		var wantItems []string
		for _, it := range items {
			wantItems = append(wantItems, it.Name)
			files, err := lm.ListLibraryItemFiles(c, it.ID)
			if err != nil {
				t.Fatal(err)
			}
			var wantFiles []string
			for _, f := range files {
				wantFiles = append(wantFiles, f.Name)
				var st syscall.Stat_t
				if err := syscall.Stat(m.Path("libraries", l.Name, it.Name, f.Name), &st); err != nil {
					t.Fatal(err)
				}
				if st.Size != *f.Size || st.Blocks != (*f.Size+511)/512 {
					t.Errorf("%s/%s/%s: size %d blocks %d, API says %d", l.Name, it.Name, f.Name, st.Size, st.Blocks, *f.Size)
				}
			}
			compareDir(t, m.Path("libraries", l.Name, it.Name), wantFiles)
		}
		compareDir(t, m.Path("libraries", l.Name), wantItems)
	}
	entries, _ := os.ReadDir(m.Path("libraries"))
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("libraries/: %v, want %v", got, want)
	}
	out := run(t, "df", "-k", m.Dir)
	if !strings.Contains(out, s.URL.Host) { // the vCenter is the filesystem's source
		t.Errorf("df: %s, want %s as the source", out, s.URL.Host)
	}
}

func compareDir(t *testing.T, dir string, want []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s: %v, want %v", dir, got, want)
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestReadDemoFiles: cat, cp and sha256sum of every demo file give the bytes
// the simulator serves to govmomi, with and without Range support.
func TestReadDemoFiles(t *testing.T) {
	t.Parallel()
	for _, ranges := range []bool{false, true} {
		t.Run(map[bool]string{false: "stream", true: "ranged"}[ranges], func(t *testing.T) {
			s := sim.StartT(t)
			s.Library.SetRanges(ranges)
			m := mount(t, s)
			out := t.TempDir()
			for _, f := range sim.Demo {
				want, err := s.Download(ctx(t), f.Library, f.Item, f.Name)
				if err != nil {
					t.Fatal(err)
				}
				p := m.Path("libraries", f.Library, f.Item, f.Name)
				if f.Size <= 8<<20 { // cp and sha256sum read the big ones
					cat, err := exec.Command("cat", p).Output()
					if err != nil || !bytes.Equal(cat, want) {
						t.Fatalf("cat %s: %v, %d bytes, want %d", p, err, len(cat), len(want))
					}
				}
				dst := filepath.Join(out, f.Name)
				run(t, "cp", p, dst)
				if got, _ := os.ReadFile(dst); !bytes.Equal(got, want) {
					t.Fatalf("cp %s differs", p)
				}
				line := run(t, "sha256sum", p)
				if !strings.HasPrefix(line, sum(want)) {
					t.Fatalf("sha256sum %s: %s, want %s", p, line, sum(want))
				}
			}
		})
	}
}

// TestPread: reads at random offsets, the last byte and beyond EOF match the source.
func TestPread(t *testing.T) {
	for _, ranges := range []bool{false, true} {
		t.Run(map[bool]string{false: "stream", true: "ranged"}[ranges], func(t *testing.T) {
			s := sim.StartT(t)
			s.Library.SetRanges(ranges)
			m := mount(t, s, "--cache-size", "8MiB")
			want, err := s.Download(ctx(t), "demo-library", "multi", "b.bin")
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(m.Path("libraries", "demo-library", "multi", "b.bin"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			size := int64(len(want))
			r := rand.New(rand.NewPCG(7, 7))
			offsets := []int64{size - 1, 0, size - 4096, size / 2}
			for i := 0; i < 200; i++ {
				offsets = append(offsets, r.Int64N(size))
			}
			for _, off := range offsets {
				buf := make([]byte, r.IntN(200000)+1)
				n, err := f.ReadAt(buf, off)
				if err != nil && err != io.EOF {
					t.Fatalf("pread %d: %v", off, err)
				}
				end := off + int64(len(buf))
				if end > size {
					end = size
				}
				if int64(n) != end-off || !bytes.Equal(buf[:n], want[off:end]) {
					t.Fatalf("pread at %d: %d bytes, differ from source", off, n)
				}
			}
			for _, off := range []int64{size, size + 1, size + 1<<20} {
				n, err := f.ReadAt(make([]byte, 10), off)
				if n != 0 || err != io.EOF {
					t.Fatalf("pread beyond EOF at %d: %d, %v", off, n, err)
				}
			}
		})
	}
}

// TestConcurrentReaders: 8 readers of one file and of different files.
func TestConcurrentReaders(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--cache-size", "16MiB")
	want := map[string]string{}
	var paths []string
	for _, f := range sim.Demo {
		b, err := s.Download(ctx(t), f.Library, f.Item, f.Name)
		if err != nil {
			t.Fatal(err)
		}
		p := m.Path("libraries", f.Library, f.Item, f.Name)
		want[p] = sum(b)
		paths = append(paths, p)
	}
	big := m.Path("libraries", "demo-library", "big", "big.bin")
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		p := big
		if i%2 == 1 {
			p = paths[i/2%len(paths)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := os.ReadFile(p)
			if err != nil {
				t.Error(err)
				return
			}
			if sum(b) != want[p] {
				t.Errorf("%s: concurrent read differs", p)
			}
		}()
	}
	wg.Wait()
}

// TestLargerThanCache: a 64 MiB file through an 8 MiB cache, both modes.
func TestLargerThanCache(t *testing.T) {
	t.Parallel()
	for _, ranges := range []bool{false, true} {
		t.Run(map[bool]string{false: "stream", true: "ranged"}[ranges], func(t *testing.T) {
			s := sim.StartT(t)
			s.Library.SetRanges(ranges)
			m := mount(t, s, "--cache-size", "8MiB")
			want, err := s.Download(ctx(t), "demo-library", "big", "big.bin")
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				line := run(t, "sha256sum", m.Path("libraries", "demo-library", "big", "big.bin"))
				if !strings.HasPrefix(line, sum(want)) {
					t.Fatalf("read %d: %s, want %s", i, line, sum(want))
				}
				dropPageCache(t, m.Path("libraries", "demo-library", "big", "big.bin"))
			}
		})
	}
}

func dropPageCache(t *testing.T, p string) {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// TestRereadStartsNoTransfer: a second read of a cached file starts no GET;
// with a small cache only the evicted blocks are fetched again.
func TestRereadStartsNoTransfer(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	s.Library.SetRanges(true)
	m := mount(t, s, "--cache-size", "64MiB")
	p := m.Path("libraries", "iso-library", "tools", "tools.iso")
	run(t, "cat", p)
	gets1, _, bytes1 := s.Library.Stats()
	if gets1 == 0 || bytes1 < 8<<20 {
		t.Fatalf("first read: %d GETs, %d bytes", gets1, bytes1)
	}
	dropPageCache(t, p)
	run(t, "cat", p)
	gets2, _, bytes2 := s.Library.Stats()
	if gets2 != gets1 || bytes2 != bytes1 {
		t.Fatalf("re-read started %d GETs (%d bytes); all blocks were cached", gets2-gets1, bytes2-bytes1)
	}

	// 8 MiB cache, 64 MiB file: the second read refetches what was evicted, not more.
	s2 := sim.StartT(t)
	s2.Library.SetRanges(true)
	m2 := mount(t, s2, "--cache-size", "8MiB")
	big := m2.Path("libraries", "demo-library", "big", "big.bin")
	run(t, "cat", big)
	_, _, first := s2.Library.Stats()
	dropPageCache(t, big)
	f, _ := os.Open(big)
	buf := make([]byte, 1<<20)
	if _, err := f.ReadAt(buf, 64<<20-1<<20); err != nil { // the tail is still cached
		t.Fatal(err)
	}
	f.Close()
	_, _, after := s2.Library.Stats()
	if after != first {
		t.Fatalf("reading cached tail fetched %d bytes", after-first)
	}
}

// TestNoSessionAfterUnmount: download sessions are deleted when the mount ends.
func TestNoSessionAfterUnmount(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	run(t, "cat", m.Path("libraries", "demo-library", "hello", "hello.txt"), m.Path("libraries", "demo-library", "multi", "a.bin"))
	ids, err := s.DownloadSessions(ctx(t))
	if err != nil || len(ids) == 0 {
		t.Fatalf("while mounted: %v sessions, %v", ids, err)
	}
	m.Unmount(t)
	ids, err = s.DownloadSessions(ctx(t))
	if err != nil || len(ids) != 0 {
		t.Fatalf("after unmount: sessions %v, %v", ids, err)
	}
}

// TestOddNames: the reversible name rule, on libraries and items named to exercise it.
func TestOddNames(t *testing.T) {
	s := sim.StartT(t)
	c := ctx(t)
	names := map[string]string{"a/b": "a%2Fb", "100%": "100%25", ".": "%2E", "..": "%2E%2E", "x\x00y": "x%00y"}
	// vCenter refuses '/' and ".." in item names (vcsim too), not in library names.
	itemName := func(name string) string {
		if strings.Contains(name, "/") || strings.Contains(name, "..") {
			return "item"
		}
		return name
	}
	for name := range names {
		id, err := s.CreateLibrary(c, name)
		if err != nil {
			t.Fatal(err)
		}
		item, err := s.CreateItem(c, id, itemName(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.UploadFile(c, item, "f.txt", strings.NewReader(name), int64(len(name))); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := s.CreateLibrary(c, "dup")
	time.Sleep(10 * time.Millisecond)
	second, _ := s.CreateLibrary(c, "dup")
	m := mount(t, s)
	for name, enc := range names {
		b, err := os.ReadFile(m.Path("libraries", enc, vfs.EncodeName(itemName(name)), "f.txt"))
		if err != nil || string(b) != name {
			t.Errorf("%q as %q: %q, %v", name, enc, b, err)
		}
	}
	if _, err := os.Stat(m.Path("libraries", "dup")); err != nil {
		t.Errorf("oldest dup: %v", err)
	}
	if _, err := os.Stat(m.Path("libraries", "dup~"+second)); err != nil {
		t.Errorf("second dup as dup~%s: %v", second, err)
	}
	if _, err := os.Stat(m.Path("libraries", "dup~"+first)); err == nil {
		t.Errorf("the oldest dup must keep the plain name")
	}
}

// TestReadOnly: with --read-only, libraries/ refuses writes with EROFS.
func TestReadOnly(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--read-only")
	p := m.Path("libraries", "demo-library", "hello", "hello.txt")
	checks := map[string]error{}
	_, checks["open for write"] = os.OpenFile(p, os.O_WRONLY, 0)
	checks["create"] = os.WriteFile(m.Path("libraries", "demo-library", "hello", "new.txt"), []byte("x"), 0o644)
	checks["mkdir"] = os.Mkdir(m.Path("libraries", "demo-library", "new"), 0o755)
	checks["rm"] = os.Remove(p)
	checks["rename"] = os.Rename(m.Path("libraries", "demo-library", "hello"), m.Path("libraries", "demo-library", "hello2"))
	checks["chmod"] = os.Chmod(p, 0o600)
	checks["mkdir library"] = os.Mkdir(m.Path("libraries", "new"), 0o755)
	checks["truncate"] = os.Truncate(p, 0)
	for what, err := range checks {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", what, err)
		}
	}
}

// TestNewContentAppearsAfterTTL: a library made by another client shows up.
func TestNewContentAppearsAfterTTL(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--ttl", "200ms")
	if _, err := os.Stat(m.Path("libraries", "later")); err == nil {
		t.Fatal("later exists before it was made")
	}
	c := ctx(t)
	id, err := s.CreateLibrary(c, "later")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateItem(c, id, "thing"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(m.Path("libraries", "later", "thing")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("new library and item never appeared")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPrepareError: a file whose preparation fails reads as EIO, with a log
// line naming the path, the call and the server's message.
func TestPrepareError(t *testing.T) {
	s := sim.StartT(t)
	s.Prepare.Fail("readme.txt", "storage backing unavailable")
	m := mount(t, s)
	_, err := os.ReadFile(m.Path("libraries", "demo-library", "multi", "readme.txt"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read: %v, want EIO", err)
	}
	if !m.WaitLog("readme.txt", "prepare", "storage backing unavailable") {
		t.Fatalf("no log line naming path, call and fault:\n%s", m.Log())
	}
	s.Prepare.Fail("readme.txt", "")
	if b, err := os.ReadFile(m.Path("libraries", "demo-library", "multi", "readme.txt")); err != nil || len(b) != 100 {
		t.Fatalf("after the fault cleared: %d bytes, %v", len(b), err)
	}
}

// TestInterruptBlockedRead: Ctrl-C on a read blocked on the network returns.
func TestInterruptBlockedRead(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	s.Library.SetDelay(time.Hour)
	cmd := exec.Command("cat", m.Path("libraries", "demo-library", "multi", "a.bin"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("cat blocked on the network did not stop on SIGINT")
	}
	s.Library.SetDelay(0)
}

// TestRelogin: after the server drops every session, reads go on.
func TestRelogin(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--ttl", "1ms")
	if _, err := os.ReadFile(m.Path("libraries", "demo-library", "hello", "hello.txt")); err != nil {
		t.Fatal(err)
	}
	if err := s.Sessions.Expire(ctx(t)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	b, err := os.ReadFile(m.Path("libraries", "demo-library", "multi", "readme.txt"))
	if err != nil || len(b) != 100 {
		t.Fatalf("after sessions expired: %d bytes, %v\n%s", len(b), err, m.Log())
	}
	if !m.WaitLog("logging in again") {
		t.Fatalf("no re-login logged:\n%s", m.Log())
	}
}

// TestStalledTransfer: a download that sends nothing for --timeout fails the
// read with EIO and a log line; the next read starts a new transfer.
func TestStalledTransfer(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--timeout", "2s")
	s.Library.SetDelay(time.Hour)
	_, err := os.ReadFile(m.Path("libraries", "demo-library", "multi", "a.bin"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("stalled read: %v, want EIO", err)
	}
	if !m.WaitLog("no data received", "a.bin") {
		t.Fatalf("no log line for the stall:\n%s", m.Log())
	}
	s.Library.SetDelay(0)
	want, err := s.Download(ctx(t), "demo-library", "multi", "a.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(m.Path("libraries", "demo-library", "multi", "a.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after the stall: %d bytes, %v", len(got), err)
	}
}

// TestNewVersionSeen: after another client replaces a file (same size, new
// bytes), opens after the TTL see the new bytes (the kernel's pages of the old
// version are dropped), while a reader that opened the old version keeps it.
func TestNewVersionSeen(t *testing.T) {
	s := sim.StartT(t)
	s.Library.SetRanges(true)
	m := mount(t, s, "--ttl", "100ms", "--cache-size", "8MiB")
	p := m.Path("libraries", "demo-library", "multi", "b.bin")
	old, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p) // the old reader
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := ctx(t)
	size := int64(len(old))
	if err := s.UploadFile(c, itemID(t, s, "demo-library", "multi"), "b.bin", sim.DemoBytes("new b.bin", size), size); err != nil {
		t.Fatal(err)
	}
	want, err := s.Download(c, "demo-library", "multi", "b.bin")
	if err != nil || bytes.Equal(want, old) {
		t.Fatalf("the server did not change the file: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("open after the change: %v, new bytes: %v", err, bytes.Equal(got, want))
	}
	buf := make([]byte, len(old))
	if n, err := f.ReadAt(buf, 0); n != len(old) || (err != nil && err != io.EOF) || !bytes.Equal(buf, old) {
		t.Fatalf("the old reader lost its version: %d, %v", n, err)
	}
}

// TestRangedRandomRead: with Range support, a random read fetches the blocks
// it needs (plus a bounded read-ahead), not the file from byte 0; without it,
// the one stream serves later random reads from the spool.
func TestRangedRandomRead(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	s.Library.SetRanges(true)
	m := mount(t, s)
	f, err := os.Open(m.Path("libraries", "demo-library", "big", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := s.Download(ctx(t), "demo-library", "big", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	_, _, before := s.Library.Stats()
	buf := make([]byte, 4096)
	off := int64(50 << 20)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, want[off:off+4096]) {
		t.Fatal("random read differs")
	}
	_, ranged, after := s.Library.Stats()
	if ranged == 0 || after-before > 12<<20 {
		t.Fatalf("a 4 KiB read at 50 MiB fetched %d bytes in %d ranged GETs", after-before, ranged)
	}
}

// TestIdleSessionDeleted: a download session is kept while a reader uses it
// and deleted once idle, while the mount goes on.
func TestIdleSessionDeleted(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	pass, _ := s.URL.User.Password()
	ca, _ := s.CertificateFile()
	env := []string{"GOVC_USERNAME=" + s.URL.User.Username(), "GOVC_PASSWORD=" + pass, "GOVC_URL="}
	m := mountWith(t, s, env, "--ca-certs", ca, "--test-download-idle", "1s")
	f, err := os.Open(m.Path("libraries", "demo-library", "multi", "a.bin"))
	if err != nil {
		t.Fatal(err)
	}
	s.Library.SetDelay(3 * time.Second) // the read holds the session past the idle time
	done := make(chan error, 1)
	go func() {
		_, err := f.ReadAt(make([]byte, 4096), 0)
		done <- err
	}()
	time.Sleep(2500 * time.Millisecond)
	if ids, _ := s.DownloadSessions(ctx(t)); len(ids) != 1 {
		t.Fatalf("during a read: sessions %v, want the one in use", ids)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.Library.SetDelay(0)
	f.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ids, err := s.DownloadSessions(ctx(t))
		if err == nil && len(ids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle session not deleted: %v %v", ids, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.ReadFile(m.Path("libraries", "demo-library", "hello", "hello.txt")); err != nil {
		t.Fatalf("a read after the idle deletion: %v", err)
	}
}
