package test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

// tmpfsDir is a tmpfs of size bytes, unmounted in cleanup (after the
// mounts made later, whose cleanups run first).
func tmpfsDir(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestStreamedUpload: a 128 MiB cp into an item with --cache-dir on a 32
// MiB tmpfs (four times too small to stage it, twice the 16 MiB a
// streamed file keeps on disk) succeeds in one session, the bytes equal;
// the server changes only at close. (1 GiB took three minutes of the
// suite under -race and proves no more; BenchmarkLibraryWrite streams
// 1 GiB and reports the disk's peak.)
func TestStreamedUpload(t *testing.T) {
	s := sim.StartT(t)
	cache := tmpfsDir(t, "32m")
	m := mount(t, s, "--cache-dir", cache, "--cache-size", "16MiB")
	const size = 128 << 20
	src := filepath.Join(t.TempDir(), "big.bin")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), sim.DemoBytes("stream", size)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := h.Sum(nil)
	received := s.Updates.Received()
	n := sessions(s, func() { run(t, "cp", src, m.Path("libraries", "demo-library", "hello", "big.bin")) })
	if n != 1 {
		t.Fatalf("cp of 128 MiB: %d sessions, want 1", n)
	}
	if got := s.Updates.Received() - received; got != size {
		t.Fatalf("the server received %d bytes, want %d (once)", got, size)
	}
	got, err := s.Download(ctx(t), "demo-library", "hello", "big.bin")
	if err != nil || len(got) != size {
		t.Fatalf("big.bin on the server: %d bytes (%v)", len(got), err)
	}
	if sum := sha256.Sum256(got); !bytes.Equal(sum[:], want) {
		t.Fatal("big.bin on the server differs from what cp read")
	}
	if strings.Contains(m.Log(), "level=ERROR") {
		t.Fatalf("errors logged:\n%s", m.Log())
	}
}

// TestStreamedUploadFallback: a rewrite of a file being streamed, while
// its start is still here, stops the upload and stages the file: the
// right bytes land, in one session, at close; a rewrite behind the part
// already dropped fails with EIO and leaves the server's file as it was;
// fsync of a streamed file waits for its bytes and commits nothing.
func TestStreamedUploadFallback(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	item := m.Path("libraries", "demo-library", "multi")
	p := filepath.Join(item, "a.bin")
	old, err := s.Download(ctx(t), "demo-library", "multi", "a.bin")
	if err != nil {
		t.Fatal(err)
	}

	// Rewritten early: staged instead.
	data := randBytes(1, 6<<20)
	n := sessions(s, func() {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync of a streamed file: %v", err)
		}
		serverHas(t, s, "demo-library", "multi", "a.bin", old) // nothing committed yet
		patch := []byte("patched at 100")
		if _, err := f.WriteAt(patch, 100); err != nil {
			t.Fatalf("rewrite of a streamed file's start: %v", err)
		}
		copy(data[100:], patch)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	})
	serverHas(t, s, "demo-library", "multi", "a.bin", data)
	if n != 1 {
		t.Fatalf("rewritten while streamed: %d sessions, want 1", n)
	}

	// Rewritten behind the dropped part: EIO, the server keeps its file.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	big := randBytes(2, 40<<20)
	if _, err := f.Write(big); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("too late"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("rewrite behind the uploaded part: %v, want EIO", err)
	}
	if err := f.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close after that: %v, want EIO", err)
	}
	serverHas(t, s, "demo-library", "multi", "a.bin", data)
	if !m.WaitLog("a.bin") {
		t.Fatalf("no log line naming the file:\n%s", m.Log())
	}
	// The next write of the file works.
	if err := os.WriteFile(p, []byte("after\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkLanded(t, s, m, "demo-library", "multi", "a.bin", []byte("after\n"))
}

// TestStreamedUploadFails: a streamed upload whose PUT breaks while every
// byte is still here is committed staged at close (one session, the right
// bytes); one that breaks after bytes were dropped fails with EIO, the
// server's file as it was, and one log line naming the path, call and fault.
func TestStreamedUploadFails(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	p := m.Path("libraries", "demo-library", "multi", "b.bin")
	s.Updates.FailPutAfter(1 << 20)
	s.Updates.FailNext(sim.FailPut)
	small := randBytes(5, 6<<20)
	n := sessions(s, func() {
		if err := os.WriteFile(p, small, 0o644); err != nil {
			t.Fatalf("a streamed upload that broke early: %v", err)
		}
	})
	serverHas(t, s, "demo-library", "multi", "b.bin", small)
	if n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}

	s.Updates.FailPutAfter(30 << 20)
	s.Updates.FailNext(sim.FailPut)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, werr := f.Write(randBytes(6, 60<<20))
	cerr := f.Close()
	if !errors.Is(werr, syscall.EIO) && !errors.Is(cerr, syscall.EIO) {
		t.Fatalf("a streamed upload that broke late: write %v, close %v; want EIO", werr, cerr)
	}
	serverHas(t, s, "demo-library", "multi", "b.bin", small)
	if !m.WaitLog("multi/b.bin", "call=PUT") {
		t.Fatalf("no log line naming the file and the PUT:\n%s", m.Log())
	}
}

// TestStreamedUploadSharedDescriptor: a streamed file written through a
// descriptor a shell shares with its children is committed at the last
// close of all, once, with every byte.
func TestStreamedUploadSharedDescriptor(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	item := m.Path("libraries", "demo-library", "hello")
	src := filepath.Join(t.TempDir(), "src")
	data := randBytes(8, 30<<20)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	n := sessions(s, func() { sh(t, item, `exec 3>shared.bin; cat "`+src+`" >&3; echo tail >&3; exec 3>&-`) })
	serverHas(t, s, "demo-library", "hello", "shared.bin", append(data, "tail\n"...))
	if n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
}

// TestStreamedUploadStallWhileWriting: a streamed PUT the server stops
// reading while the writer is still writing fails within about --timeout:
// the writer gets EIO (no staged retry: the stall took the deadline), the
// bytes it wrote are in recovery/ with their origin, one log line names the
// path, the PUT and the fault, and the item is unchanged with no session left.
func TestStreamedUploadStallWhileWriting(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--timeout", "2s")
	data := randBytes(21, 32<<20)
	src := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Updates.SetStallAfter(0)
	s.Updates.FailNext(sim.StallPut)
	out, err := exec.Command("cp", src, m.Path("libraries", "demo-library", "hello", "stalled.bin")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Input/output error") {
		t.Fatalf("cp through a stalled streamed PUT: %v %s", err, out)
	}
	m.WaitLog("hello/stalled.bin call=PUT") // the line may follow the syscall's answer
	var lines []string
	for _, l := range strings.Split(m.Log(), "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, "hello/stalled.bin") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "call=PUT") || !strings.Contains(lines[0], "no data received") {
		t.Fatalf("want one log line naming the PUT and the stall, got %d:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	rec := logValue(lines[0], "recovery")
	got, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	e := indexEntry(t, m.CacheDir, rec)
	if e["origin"] != "libraries/demo-library/hello/stalled.bin" || e["offset"] != nil || len(got) < 4<<20 || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("recovered %d bytes (INDEX %v): want the start of what cp wrote, at least 4 MiB", len(got), e)
	}
	if _, err := s.Download(ctx(t), "demo-library", "hello", "stalled.bin"); err == nil {
		t.Fatal("the item has the file")
	}
	if a := s.Updates.Active(itemID(t, s, "demo-library", "hello")); len(a) != 0 {
		t.Fatalf("sessions left active: %v", a)
	}
}
