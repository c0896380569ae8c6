package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/vspherefs/vspherefs/test/sim"
)

// randBytes is n deterministic bytes for a seed.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// govcExport reads lib/item/file with govc library.export.
func govcExport(t *testing.T, s *sim.Server, p string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export")
	cmd := exec.Command(govc, "library.export", p, out)
	cmd.Env = append(os.Environ(), "GOVC_URL="+s.URL.String(), "GOVC_INSECURE=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("govc library.export %s: %v\n%s", p, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serverFiles lists an item's files as the API has them (duplicates included).
func serverFiles(t *testing.T, s *sim.Server, lib, item string) []string {
	t.Helper()
	c := ctx(t)
	_, rc, err := s.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	files, err := library.NewManager(rc).ListLibraryItemFiles(c, itemID(t, s, lib, item))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	sort.Strings(names)
	return names
}

// itemID is the id of lib/item, which must be unique.
func itemID(t *testing.T, s *sim.Server, lib, item string) string {
	t.Helper()
	c := ctx(t)
	_, rc, err := s.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	lm := library.NewManager(rc)
	l, err := lm.GetLibraryByName(c, lib)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := lm.FindLibraryItems(c, library.FindItem{LibraryID: l.ID, Name: item})
	if err != nil || len(ids) != 1 {
		t.Fatalf("item %s/%s: %v (%d found)", lib, item, err, len(ids))
	}
	return ids[0]
}

// checkLanded: the mount, govmomi and govc all read want at lib/item/name,
// and the item lists the name once.
func checkLanded(t *testing.T, s *sim.Server, m *Mount, lib, item, name string, want []byte) {
	t.Helper()
	got, err := s.Download(ctx(t), lib, item, name)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s/%s/%s through govmomi: %d bytes (%v), want %d", lib, item, name, len(got), err, len(want))
	}
	if got := govcExport(t, s, lib+"/"+item+"/"+name); !bytes.Equal(got, want) {
		t.Fatalf("%s/%s/%s through govc: %d bytes, want %d", lib, item, name, len(got), len(want))
	}
	if got, err := os.ReadFile(m.Path("libraries", lib, item, name)); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s/%s/%s through the mount: %d bytes (%v), want %d", lib, item, name, len(got), err, len(want))
	}
	seen := 0
	for _, n := range serverFiles(t, s, lib, item) {
		if n == name {
			seen++
		}
	}
	if seen != 1 {
		t.Fatalf("%s/%s lists %s %d times", lib, item, name, seen)
	}
}

// TestWriteRoundTrip: new files (empty, small, 64 MiB) and overwrites land,
// read back identically through govmomi, govc and the mount.
func TestWriteRoundTrip(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--cache-size", "16MiB")
	for _, tc := range []struct {
		name string
		size int
	}{{"empty.bin", 0}, {"small.txt", 1234}, {"big.bin", 64 << 20}} {
		want := randBytes(uint64(tc.size), tc.size)
		src := filepath.Join(t.TempDir(), tc.name)
		if err := os.WriteFile(src, want, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "cp", src, m.Path("libraries", "demo-library", "hello", tc.name))
		checkLanded(t, s, m, "demo-library", "hello", tc.name, want)
	}
	// Overwrite (O_TRUNC) an existing file, larger then smaller.
	for i, size := range []int{3 << 20, 10} {
		want := randBytes(uint64(100+i), size)
		if err := os.WriteFile(m.Path("libraries", "demo-library", "multi", "a.bin"), want, 0o644); err != nil {
			t.Fatal(err)
		}
		checkLanded(t, s, m, "demo-library", "multi", "a.bin", want)
	}
	if got := serverFiles(t, s, "demo-library", "hello"); strings.Join(got, ",") != "big.bin,empty.bin,hello.txt,small.txt" {
		t.Fatalf("hello lists %v", got)
	}
	if strings.Contains(m.Log(), "level=ERROR") {
		t.Fatalf("errors logged:\n%s", m.Log())
	}
}

// TestWriteRandom: pwrite at random offsets into an existing file (its bytes
// staged first), extending writes, truncate, then O_APPEND.
func TestWriteRandom(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	p := m.Path("libraries", "demo-library", "multi", "b.bin")
	model, err := s.Download(ctx(t), "demo-library", "multi", "b.bin")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 300; i++ {
		off := r.Int64N(int64(len(model)) + 100000)
		b := randBytes(uint64(i), r.IntN(70000)+1)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		if end := int(off) + len(b); end > len(model) {
			model = append(model, make([]byte, end-len(model))...)
		}
		copy(model[off:], b)
		if i == 150 {
			if err := f.Truncate(3 << 20); err != nil {
				t.Fatal(err)
			}
			model = model[:3<<20]
		}
		if i%50 == 0 { // reads see the writes
			got := make([]byte, 4096)
			n, _ := f.ReadAt(got, off)
			if !bytes.Equal(got[:n], model[off:min(int(off)+4096, len(model))]) {
				t.Fatalf("read after write at %d differs", off)
			}
		}
	}
	if err := f.Sync(); err != nil { // fsync commits too
		t.Fatal(err)
	}
	if got, err := s.Download(ctx(t), "demo-library", "multi", "b.bin"); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("after fsync: %d bytes (%v), want %d", len(got), err, len(model))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		b := randBytes(uint64(1000+i), 5000)
		if _, err := a.WriteAt(b, 0); err == nil {
			t.Fatal("pwrite on O_APPEND succeeded") // Go refuses; use Write
		}
		if _, err := a.Write(b); err != nil {
			t.Fatal(err)
		}
		model = append(model, b...)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// truncate(2) of a closed file stages and commits at once.
	if err := os.Truncate(p, 1<<20); err != nil {
		t.Fatal(err)
	}
	model = model[:1<<20]
	checkLanded(t, s, m, "demo-library", "multi", "b.bin", model)
}

// TestWriteFailures: a fault at each commit step makes close() return EIO,
// leaves the item as it was (no session left active) and keeps the bytes in
// recovery/, named in the log line.
func TestWriteFailures(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	id := itemID(t, s, "demo-library", "hello")
	old, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	for i, step := range []struct {
		fault, call string
	}{
		{sim.FailCreate, "updatesession:create"},
		{sim.FailAdd, "updatesession/file:add"},
		{sim.FailPut, "PUT"},
		{sim.FailValidate, "updatesession/file:validate"},
		{sim.FailComplete, "updatesession:complete"},
		{sim.FailApply, "updatesession:complete"},
	} {
		t.Run(step.fault, func(t *testing.T) {
			s.Updates.FailPutAfter(1 << 20)
			s.Updates.FailNext(step.fault)
			want := randBytes(uint64(i), 3<<20)
			err := os.WriteFile(m.Path("libraries", "demo-library", "hello", "hello.txt"), want, 0o644)
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("close after a %s fault: %v, want EIO", step.fault, err)
			}
			if got, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt"); err != nil || !bytes.Equal(got, old) {
				t.Fatalf("item changed: %d bytes, %v", len(got), err)
			}
			if got := serverFiles(t, s, "demo-library", "hello"); strings.Join(got, ",") != "hello.txt" {
				t.Fatalf("files %v", got)
			}
			if a := s.Updates.Active(id); len(a) != 0 {
				t.Fatalf("sessions left active: %v", a)
			}
			var line string
			for _, l := range strings.Split(m.Log(), "\n") {
				if strings.Contains(l, "hello.txt") && strings.Contains(l, "call="+step.call) && strings.Contains(l, "recovery=") {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no log line naming the path, %s and the recovery file:\n%s", step.call, m.Log())
			}
			rec := line[strings.Index(line, "recovery=")+len("recovery="):]
			rec = strings.Trim(strings.Fields(rec)[0], `"`)
			if !strings.HasPrefix(rec, filepath.Join(m.CacheDir, "recovery")) {
				t.Fatalf("recovery file %s is not under the cache dir", rec)
			}
			if got, err := os.ReadFile(rec); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("recovered %s: %d bytes (%v), want %d", rec, len(got), err, len(want))
			}
			e := indexEntry(t, m.CacheDir, rec)
			if e["origin"] != "libraries/demo-library/hello/hello.txt" || e["call"] != step.call || e["fault"] == "" || e["tree"] != "libraries" {
				t.Fatalf("INDEX line for %s: %v", rec, e)
			}
		})
	}
	// The mount goes on: the next write lands.
	want := []byte("after the faults\n")
	if err := os.WriteFile(m.Path("libraries", "demo-library", "hello", "hello.txt"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	checkLanded(t, s, m, "demo-library", "hello", "hello.txt", want)
}

// TestWriteFailedCommitOtherWriter: after a close whose commit failed, the
// file shows the server's bytes (stat, new opens), even while another
// process keeps it open for writing; that process's close commits the
// staged bytes again.
func TestWriteFailedCommitOtherWriter(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	p := m.Path("libraries", "demo-library", "hello", "hello.txt")
	old, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	// The other writer: a shell holding the file open for appending until
	// its stdin closes (the same process's writers commit at its last close).
	holder := exec.Command("sh", "-c", "exec 3>>\"$0\"; echo open; read x || :", p)
	in, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill() }) // (done already if the test gets that far)
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "open\n" {
		t.Fatalf("holder: %q %v", line, err)
	}
	data := randBytes(7, 3<<20)
	s.Updates.FailPutAfter(1 << 20)
	s.Updates.FailNext(sim.FailPut)
	if err := os.WriteFile(p, data, 0o644); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close after a failed PUT: %v", err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != int64(len(old)) {
		t.Errorf("stat after the failed commit: %v %v, want %d bytes", fi.Size(), err, len(old))
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, old) {
		t.Errorf("new open reads %d bytes %v, want the server's %d", len(got), err, len(old))
	}
	if got, err := s.Download(ctx(t), "demo-library", "hello", "hello.txt"); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("item changed: %d bytes, %v", len(got), err)
	}
	in.Close()
	if err := holder.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	checkLanded(t, s, m, "demo-library", "hello", "hello.txt", data)
}

// TestWriteTwoFilesAtOnce: two files of one item written at the same time
// both land (one session at a time per item, queued).
func TestWriteTwoFilesAtOnce(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	s.Updates.SetDonePolls(3)
	var wg sync.WaitGroup
	want := map[string][]byte{}
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("par%d.bin", i)
		want[name] = randBytes(uint64(50+i), (i+1)<<20+i)
	}
	for name, b := range want {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := os.WriteFile(m.Path("libraries", "demo-library", "multi", name), b, 0o644); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for name, b := range want {
		checkLanded(t, s, m, "demo-library", "multi", name, b)
	}
}

// TestItemsAndLibraries: mkdir makes items and libraries, rmdir removes empty
// ones only, rm removes a file, mv renames an item and a file within it,
// links are EPERM, metadata changes succeed.
func TestItemsAndLibraries(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	lib := m.Path("libraries", "made")
	if err := os.Mkdir(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	item := filepath.Join(lib, "thing")
	if err := os.Mkdir(item, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(item, 0o755); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("mkdir twice: %v", err)
	}
	want := []byte("in a new library\n")
	if err := os.WriteFile(filepath.Join(item, "f.txt"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	checkLanded(t, s, m, "made", "thing", "f.txt", want)
	if err := os.Remove(item); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a full item: %v", err)
	}
	if err := os.Remove(lib); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a full library: %v", err)
	}
	checks := map[string]struct {
		err  error
		want syscall.Errno
	}{}
	checks["link"] = struct {
		err  error
		want syscall.Errno
	}{os.Link(filepath.Join(item, "f.txt"), filepath.Join(item, "g.txt")), syscall.EPERM}
	checks["symlink"] = struct {
		err  error
		want syscall.Errno
	}{os.Symlink("f.txt", filepath.Join(item, "s")), syscall.EPERM}
	checks["mkdir in item"] = struct {
		err  error
		want syscall.Errno
	}{os.Mkdir(filepath.Join(item, "sub"), 0o755), syscall.EPERM}
	checks["file in library"] = struct {
		err  error
		want syscall.Errno
	}{os.WriteFile(filepath.Join(lib, "loose.txt"), nil, 0o644), syscall.EPERM}
	for what, c := range checks {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", what, c.err, c.want)
		}
	}
	f := filepath.Join(item, "f.txt")
	if err := os.Chmod(f, 0o600); err != nil {
		t.Errorf("chmod: %v", err)
	}
	if err := os.Chown(f, 1000, 1000); err != nil {
		t.Errorf("chown: %v", err)
	}
	if err := os.Chtimes(f, time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Errorf("utimens: %v", err)
	}
	if err := os.Chtimes(item, time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Errorf("utimens on an item: %v", err)
	}
	// mv of a file within its item renames it (TestRenamesInItem).
	run(t, "mv", f, filepath.Join(item, "moved.txt"))
	if got := serverFiles(t, s, "made", "thing"); strings.Join(got, ",") != "moved.txt" {
		t.Fatalf("after mv: %v", got)
	}
	// mv of an item renames it.
	run(t, "mv", item, filepath.Join(lib, "renamed"))
	checkLanded(t, s, m, "made", "renamed", "moved.txt", want)
	if _, err := os.Stat(item); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old item name: %v", err)
	}
	// rm, then rmdir of the emptied item and library.
	if err := os.Remove(filepath.Join(lib, "renamed", "moved.txt")); err != nil {
		t.Fatal(err)
	}
	if got := serverFiles(t, s, "made", "renamed"); len(got) != 0 {
		t.Fatalf("after rm: %v", got)
	}
	if err := os.Remove(filepath.Join(lib, "renamed")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(lib); err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	_, rc, _ := s.Client(c)
	if _, err := library.NewManager(rc).GetLibraryByName(c, "made"); err == nil {
		t.Fatal("library still there after rmdir")
	}
}

// TestRsyncTarCp: rsync -r into an item leaves no temp-named file and sends
// each byte once; tar -x into an item works; cp -r makes one item per folder.
func TestRsyncTarCp(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	src := t.TempDir()
	want := map[string][]byte{}
	var total int64
	for i, n := range []string{"a.bin", "b.txt", "c.dat"} {
		want[n] = randBytes(uint64(i+7), (i+1)*300000)
		total += int64(len(want[n]))
		if err := os.WriteFile(filepath.Join(src, n), want[n], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(m.Path("libraries", "demo-library", "synced"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := s.Updates.Received()
	run(t, "rsync", "-r", src+"/", m.Path("libraries", "demo-library", "synced")+"/")
	if sent := s.Updates.Received() - before; sent != total {
		t.Errorf("rsync sent %d bytes to the server, want %d (once each)", sent, total)
	}
	if got := serverFiles(t, s, "demo-library", "synced"); strings.Join(got, ",") != "a.bin,b.txt,c.dat" {
		t.Fatalf("after rsync -r: %v", got)
	}
	for n, b := range want {
		checkLanded(t, s, m, "demo-library", "synced", n, b)
	}
	// rsync -a again with changed content: replaced in place, metadata ignored.
	want["b.txt"] = []byte("changed\n")
	os.WriteFile(filepath.Join(src, "b.txt"), want["b.txt"], 0o600)
	run(t, "rsync", "-a", src+"/", m.Path("libraries", "demo-library", "synced")+"/")
	checkLanded(t, s, m, "demo-library", "synced", "b.txt", want["b.txt"])
	if got := serverFiles(t, s, "demo-library", "synced"); strings.Join(got, ",") != "a.bin,b.txt,c.dat" {
		t.Fatalf("after rsync -a: %v", got)
	}

	// tar -x into a new item.
	tarball := filepath.Join(t.TempDir(), "x.tar")
	run(t, "tar", "-C", src, "-cf", tarball, ".")
	if err := os.Mkdir(m.Path("libraries", "demo-library", "untarred"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "tar", "-C", m.Path("libraries", "demo-library", "untarred"), "-xf", tarball)
	for n, b := range want {
		checkLanded(t, s, m, "demo-library", "untarred", n, b)
	}

	// cp -r of a tree: one item per folder.
	tree := t.TempDir()
	for _, d := range []string{"one", "two"} {
		os.MkdirAll(filepath.Join(tree, "set", d), 0o755)
		os.WriteFile(filepath.Join(tree, "set", d, d+".txt"), []byte(d), 0o644)
	}
	if err := os.Mkdir(m.Path("libraries", "set"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "-r", filepath.Join(tree, "set", "one"), filepath.Join(tree, "set", "two"), m.Path("libraries", "set")+"/")
	checkLanded(t, s, m, "set", "one", "one.txt", []byte("one"))
	checkLanded(t, s, m, "set", "two", "two.txt", []byte("two"))
}

// TestOVFHeldUntilComplete: an .ovf written before the file it references is
// held, then both are committed in one session.
func TestOVFHeldUntilComplete(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	dir := m.Path("libraries", "demo-library", "tmpl")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ovf := `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:href="disk1.img" ovf:id="file1"/>
  </References>
  <VirtualSystem ovf:id="vm"/>
</Envelope>`
	completed := s.Updates.Completed()
	if err := os.WriteFile(filepath.Join(dir, "tmpl.ovf"), []byte(ovf), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := serverFiles(t, s, "demo-library", "tmpl"); len(got) != 0 {
		t.Fatalf("the .ovf was committed without its disk: %v", got)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tmpl.ovf")); err != nil || string(b) != ovf {
		t.Fatalf("held .ovf reads %q, %v", b, err)
	}
	disk := randBytes(9, 2<<20)
	if err := os.WriteFile(filepath.Join(dir, "disk1.img"), disk, 0o644); err != nil {
		t.Fatal(err)
	}
	if n := s.Updates.Completed() - completed; n != 1 {
		t.Errorf("%d sessions completed, want 1 holding both files", n)
	}
	checkLanded(t, s, m, "demo-library", "tmpl", "tmpl.ovf", []byte(ovf))
	checkLanded(t, s, m, "demo-library", "tmpl", "disk1.img", disk)
}

// TestOldReaderKeepsVersion: a reader that opened the old version keeps
// reading it after a commit; an open after the commit sees the new one.
func TestOldReaderKeepsVersion(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--cache-size", "8MiB")
	p := m.Path("libraries", "demo-library", "big", "big.bin")
	old, err := s.Download(ctx(t), "demo-library", "big", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, old[:1<<20]) {
		t.Fatalf("first read: %v", err)
	}
	want := randBytes(77, 2<<20)
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("open after the commit: %d bytes (%v), want the new %d", len(got), err, len(want))
	}
	for _, off := range []int64{1 << 20, 0, 40 << 20, int64(len(old)) - 100} {
		n, err := r.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatalf("old reader at %d: %v", off, err)
		}
		if !bytes.Equal(buf[:n], old[off:min(off+int64(len(buf)), int64(len(old)))]) {
			t.Fatalf("old reader at %d sees other bytes than the version it opened", off)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(r.Fd()), &st); err != nil || st.Size != int64(len(old)) {
		t.Fatalf("old reader's fstat: size %d (%v), want %d", st.Size, err, len(old))
	}
}

// TestSubscribedReadOnly: a subscribed library refuses every write with EROFS.
func TestSubscribedReadOnly(t *testing.T) {
	s := sim.StartT(t)
	c := ctx(t)
	_, rc, err := s.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	lm := library.NewManager(rc)
	pub, err := lm.GetLibraryByName(c, "demo-library")
	if err != nil {
		t.Fatal(err)
	}
	_, err = lm.CreateLibrary(c, library.Library{
		Name:         "subscribed",
		Type:         "SUBSCRIBED",
		Storage:      pub.Storage,
		Subscription: &library.Subscription{SubscriptionURL: s.URL.Scheme + "://" + s.URL.Host + "/cls/vcsp/lib/" + pub.ID, OnDemand: new(bool)},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := mount(t, s)
	lib := m.Path("libraries", "subscribed")
	entries, err := os.ReadDir(lib)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{
		"mkdir item": os.Mkdir(filepath.Join(lib, "new"), 0o755),
	}
	if len(entries) > 0 {
		item := filepath.Join(lib, entries[0].Name())
		checks["create"] = os.WriteFile(filepath.Join(item, "new.txt"), []byte("x"), 0o644)
		checks["rmdir item"] = os.Remove(item)
		files, _ := os.ReadDir(item)
		if len(files) > 0 {
			f := filepath.Join(item, files[0].Name())
			_, checks["open for write"] = os.OpenFile(f, os.O_WRONLY, 0)
			checks["rm"] = os.Remove(f)
			checks["chmod"] = os.Chmod(f, 0o600)
		}
	} else {
		t.Log("the simulator synced no items into the subscribed library; only mkdir is checked")
	}
	checks["rmdir library"] = os.Remove(lib)
	for what, err := range checks {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", what, err)
		}
	}
}

// TestUnmountCommitsHeld: a file held for its rename (rsync's temp name) is
// committed at unmount; if that commit fails, the bytes stay in recovery/,
// the file is listed and the exit status is non-zero.
func TestUnmountCommitsHeld(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "commits", true: "fails"}[fail], func(t *testing.T) {
			s := sim.StartT(t)
			m := mount(t, s)
			want := randBytes(5, 100000)
			tmp := ".file.bin.Ab12Cd"
			if err := os.WriteFile(m.Path("libraries", "demo-library", "hello", tmp), want, 0o644); err != nil {
				t.Fatal(err)
			}
			if got := serverFiles(t, s, "demo-library", "hello"); strings.Join(got, ",") != "hello.txt" {
				t.Fatalf("held file committed before its rename: %v", got)
			}
			if fail {
				s.Updates.FailNext(sim.FailCreate)
			}
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.done:
			case <-time.After(60 * time.Second):
				t.Fatal("no exit after SIGTERM")
			}
			if !fail {
				if m.exitErr != nil {
					t.Fatalf("exit: %v\n%s", m.exitErr, m.Log())
				}
				got, err := s.Download(ctx(t), "demo-library", "hello", tmp)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("held file after unmount: %d bytes, %v", len(got), err)
				}
				return
			}
			if m.exitErr == nil {
				t.Fatalf("exit status 0 with a failed commit\n%s", m.Log())
			}
			rec := filepath.Join(m.CacheDir, "recovery", "libraries", "demo-library", "hello", tmp)
			if got, err := os.ReadFile(rec); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("recovery %s: %d bytes, %v", rec, len(got), err)
			}
			if !strings.Contains(m.Log(), rec) {
				t.Fatalf("recovery file not listed:\n%s", m.Log())
			}
			m.exitErr = nil // expected; let cleanup check the rest
		})
	}
}

// TestKilledWriterCommitted: the bytes a killed writer wrote are committed
// (the kernel closes its files), as a local filesystem keeps a partial file.
func TestKilledWriterCommitted(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	p := m.Path("libraries", "demo-library", "hello", "partial.txt")
	cmd := exec.Command("sh", "-c", `exec 3>"$1"; printf 'written before the kill' >&3; kill -9 $$`, "sh", p)
	if err := cmd.Run(); err == nil {
		t.Fatal("the writer was not killed")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := s.Download(ctx(t), "demo-library", "hello", "partial.txt")
		if err == nil && string(got) == "written before the kill" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("killed writer's bytes: %q, %v\n%s", got, err, m.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLibraryRename: mv of a library renames it on the server.
func TestLibraryRename(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s)
	run(t, "mv", m.Path("libraries", "iso-library"), m.Path("libraries", "isos"))
	c := ctx(t)
	_, rc, err := s.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := library.NewManager(rc).GetLibraryByName(c, "isos"); err != nil {
		t.Fatalf("renamed library on the server: %v", err)
	}
	if _, err := library.NewManager(rc).GetLibraryByName(c, "iso-library"); err == nil {
		t.Fatal("old library name still on the server")
	}
	want, err := s.Download(c, "isos", "tools", "tools.iso")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(m.Path("libraries", "isos", "tools", "tools.iso")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read under the new name: %v", err)
	}
}

// TestCrashedMountRescue: the staged bytes of a mount that was killed (library
// and guest files) are not lost: the next mount with the same --cache-dir moves them to
// recovery/libraries/<lib>/<item>/<file> and recovery/vms/<vm>/<guest path>
// (their origin, from the sidecar each staged file has), lists them in
// recovery/INDEX and says so in its log.
func TestCrashedMountRescue(t *testing.T) {
	s := sim.StartT(t)
	cacheDir := t.TempDir()
	login := sim.GuestLoginString()
	m := mount(t, s, "--cache-dir", cacheDir, "--guest-login", login)
	data := randBytes(42, 300000)
	f, err := os.Create(m.Path("libraries", "demo-library", "hello", "unsaved.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	guestData := randBytes(43, 200000)
	g, err := os.Create(m.Path("vms", guestVM, "tmp", "unsaved.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Write(guestData); err != nil {
		t.Fatal(err)
	}
	_ = m.cmd.Process.Kill() // the mount dies with the files open
	<-m.done
	f.Close()
	g.Close()
	_ = syscall.Unmount(m.Dir, syscall.MNT_DETACH)

	m2 := mount(t, s, "--cache-dir", cacheDir, "--guest-login", login)
	if !m2.WaitLog("not committed") {
		t.Fatalf("no log line for the rescued files:\n%s", m2.Log())
	}
	for origin, want := range map[string][]byte{
		"libraries/demo-library/hello/unsaved.bin": data,
		"vms/" + guestVM + "/tmp/unsaved.bin":      guestData,
	} {
		rec := filepath.Join(cacheDir, "recovery", filepath.FromSlash(origin))
		if b, err := os.ReadFile(rec); err != nil || !bytes.Equal(b, want) {
			all, _ := filepath.Glob(filepath.Join(cacheDir, "recovery", "*", "*"))
			t.Fatalf("%s: %d bytes (%v), want %d; recovery has %v", rec, len(b), err, len(want), all)
		}
		e := indexEntry(t, cacheDir, rec)
		if e["origin"] != origin || e["reason"] == "" || e["tree"] != strings.Split(origin, "/")[0] {
			t.Fatalf("INDEX line for %s: %v", rec, e)
		}
		if !m2.WaitLog(origin) {
			t.Fatalf("no log line naming %s:\n%s", origin, m2.Log())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(cacheDir, "staging", "*", "*")); len(left) != 0 {
		t.Errorf("left in staging: %v", left)
	}
	if spools, _ := filepath.Glob(filepath.Join(cacheDir, "spool-*")); len(spools) != 1 {
		t.Errorf("the dead mount's spool was not removed: %v", spools)
	}
	if got := serverFiles(t, s, "demo-library", "hello"); strings.Join(got, ",") != "hello.txt" {
		t.Fatalf("the killed mount's file reached the server: %v", got)
	}
}

// TestWriteCloseInterrupted: Ctrl-C on a process blocked in close() while its
// commit uploads does not lose the commit: the item gets the new file.
func TestWriteCloseInterrupted(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	src := filepath.Join(t.TempDir(), "src.bin")
	data := randBytes(7, 500000)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Updates.SetPutDelay(2 * time.Second)
	defer s.Updates.SetPutDelay(0)
	cmd := exec.Command("cp", src, m.Path("libraries", "demo-library", "hello", "interrupted.bin"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // cp is in close(), waiting for the commit
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got, err := s.Download(ctx(t), "demo-library", "hello", "interrupted.bin"); err == nil && bytes.Equal(got, data) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the interrupted close lost its commit:\n%s", m.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// indexEntry is the recovery/INDEX line of a recovery file.
func indexEntry(t *testing.T, cacheDir, rec string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cacheDir, "recovery", "INDEX"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("INDEX line %q: %v", l, err)
		}
		if e["recovery"] == rec {
			return e
		}
	}
	t.Fatalf("no INDEX line for %s:\n%s", rec, b)
	return nil
}
