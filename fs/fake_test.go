package fs

// In-memory fakes of the interfaces fs consumes (sources.go), and an
// in-process mount over them: the fs logic (holds, renames, the guest inode
// table, names) tested through real syscalls, without the simulator.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/remote"
)

// memLib is a content library service in memory: Catalog, Downloads and
// LibraryWriter at once. It records every commit.
type memLib struct {
	mu      sync.Mutex
	seq     int
	libs    map[string]*remote.Library
	items   map[string]*memItem
	commits []memCommit
	// streamDelay: StartStream starts reading the body this long before it
	// returns, as a real PUT may (it runs on its own once the session is).
	streamDelay time.Duration
}

type memItem struct {
	it    remote.Item
	files map[string][]byte
}

// memCommit is one Commit call: the names put and removed.
type memCommit struct {
	item        string
	put, remove []string
}

func newMemLib() *memLib {
	return &memLib{libs: map[string]*remote.Library{}, items: map[string]*memItem{}}
}

func (m *memLib) id(kind string) string { m.seq++; return fmt.Sprintf("%s-%d", kind, m.seq) }

func (m *memLib) Libraries(ctx context.Context) ([]remote.Library, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []remote.Library
	for _, l := range m.libs {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memLib) Items(ctx context.Context, libID string) ([]remote.Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.libs[libID] == nil {
		return nil, remote.Errorf("library:get", libID, remote.ErrNotFound, "no such library")
	}
	var out []remote.Item
	for _, it := range m.items {
		if it.it.LibraryID == libID {
			out = append(out, it.it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memLib) Item(ctx context.Context, id string, refresh bool) (remote.Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.items[id]
	if it == nil {
		return remote.Item{}, remote.Errorf("library/item:get", id, remote.ErrNotFound, "no such item")
	}
	return it.it, nil
}

func (m *memLib) Files(ctx context.Context, itemID string) (remote.Item, []remote.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.items[itemID]
	if it == nil {
		return remote.Item{}, nil, remote.Errorf("library/item:get", itemID, remote.ErrNotFound, "no such item")
	}
	var out []remote.File
	for name, b := range it.files {
		out = append(out, remote.File{Name: name, Size: int64(len(b)), Version: it.it.ContentVersion})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return it.it, out, nil
}

func (m *memLib) Invalidate(libID, itemID string) {}

func (m *memLib) Source(item remote.Item, f remote.File, origin string) cache.Source {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b []byte
	if it := m.items[item.ID]; it != nil {
		b = it.files[f.Name]
	}
	return &memSource{id: fmt.Sprintf("mem:%s@%s/%s", item.ID, item.ContentVersion, f.Name), b: b}
}

func (m *memLib) CreateLibrary(ctx context.Context, name, datastoreID string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.id("lib")
	m.libs[id] = &remote.Library{ID: id, Name: name, Type: "LOCAL", Created: time.Now(), Modified: time.Now()}
	return id, nil
}

func (m *memLib) DeleteLibrary(ctx context.Context, libID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.libs, libID)
	return nil
}

func (m *memLib) RenameLibrary(ctx context.Context, libID, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.libs[libID].Name = name
	return nil
}

func (m *memLib) CreateItem(ctx context.Context, libID, name, typ string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.id("item")
	now := time.Now()
	m.items[id] = &memItem{it: remote.Item{ID: id, LibraryID: libID, Name: name, ContentVersion: "1", Created: now, Modified: now},
		files: map[string][]byte{}}
	return id, nil
}

func (m *memLib) DeleteItem(ctx context.Context, itemID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.items, itemID)
	return nil
}

func (m *memLib) RenameItem(ctx context.Context, itemID, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items[itemID].it.Name = name
	return nil
}

// Commit reads the staged files whole, as an update session's PUTs would.
func (m *memLib) Commit(ctx context.Context, itemID string, files []remote.Staged, remove []string) error {
	data := make([][]byte, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			return remote.Errorf("update", itemID, remote.ErrIO, "%v", err)
		}
		data[i] = b[:f.Size]
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	return m.apply(itemID, names, data, remove)
}

// apply puts data under names into an item and removes the named files: one session.
func (m *memLib) apply(itemID string, names []string, data [][]byte, remove []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.items[itemID]
	if it == nil {
		return remote.Errorf("update", itemID, remote.ErrNotFound, "no such item")
	}
	c := memCommit{item: itemID, remove: slices.Clone(remove)}
	for i, n := range names {
		it.files[n] = data[i]
		c.put = append(c.put, n)
	}
	for _, r := range remove {
		delete(it.files, r)
	}
	m.commits = append(m.commits, c)
	it.it.ContentVersion = fmt.Sprint(len(m.commits) + 1)
	it.it.Modified = time.Now()
	return nil
}

func (m *memLib) StartStream(ctx context.Context, itemID, name string, body io.Reader) (Stream, error) {
	m.mu.Lock()
	_, ok := m.items[itemID]
	delay := m.streamDelay
	m.mu.Unlock()
	if !ok {
		return nil, remote.Errorf("update", itemID, remote.ErrNotFound, "no item")
	}
	s := &memStream{m: m, item: itemID, name: name, done: make(chan struct{})}
	go func() {
		_, s.err = io.Copy(&s.buf, body) // the body's WriteTo, as net/http's
		close(s.done)
	}()
	time.Sleep(delay)
	return s, nil
}

// memStream is a streamed upload into memLib: the body is read as the PUT
// would, and Finish commits what it gave.
type memStream struct {
	m          *memLib
	item, name string
	buf        bytes.Buffer
	done       chan struct{}
	err        error
}

func (s *memStream) Done() <-chan struct{}     { return s.done }
func (s *memStream) Err() error                { return s.err }
func (s *memStream) Abort(ctx context.Context) { <-s.done }

func (s *memStream) Finish(ctx context.Context, remove []string) error {
	<-s.done
	if s.err != nil {
		return s.err
	}
	return s.m.apply(s.item, []string{s.name}, [][]byte{s.buf.Bytes()}, remove)
}

func (m *memLib) commitsOf(itemID string) []memCommit {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []memCommit
	for _, c := range m.commits {
		if c.item == itemID {
			out = append(out, c)
		}
	}
	return out
}

func (m *memLib) file(itemID, name string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.items[itemID].files[name]
	return b, ok
}

// itemNamed is the id of the item called name ("" if none).
func (m *memLib) itemNamed(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, it := range m.items {
		if it.it.Name == name {
			return id
		}
	}
	return ""
}

// counts are the items made and commits done so far.
func (m *memLib) counts() (items, commits int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items), len(m.commits)
}

// memSource serves bytes from memory, ranged.
type memSource struct {
	id string
	b  []byte
}

func (s *memSource) ID() string  { return s.id }
func (s *memSource) Size() int64 { return int64(len(s.b)) }
func (s *memSource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	b := s.b[min(off, int64(len(s.b))):]
	if n >= 0 && n < int64(len(b)) {
		b = b[:n]
	}
	return io.NopCloser(bytes.NewReader(b)), true, nil
}

// memGuests is one POSIX guest in memory (Guests and Guest at once).
type memGuests struct {
	mu    sync.Mutex
	files map[string]*memGuestFile // by guest path; "/" is the root
}

type memGuestFile struct {
	st   remote.GuestStat
	data []byte
}

func newMemGuests() *memGuests {
	now := time.Now()
	return &memGuests{files: map[string]*memGuestFile{"/": {st: remote.GuestStat{Name: "/", Type: remote.GuestDir, Mode: 0o755, Mtime: now, Atime: now}}}}
}

func (g *memGuests) VMs(ctx context.Context) ([]remote.VM, error) {
	return []remote.VM{{Ref: remote.Ref{Type: "VirtualMachine", Value: "vm-1"}, Name: "vm1", On: true}}, nil
}
func (g *memGuests) VM(vm remote.VM) Guest { return g }
func (g *memGuests) ID() string            { return "vm-1" }
func (g *memGuests) Name() string          { return "vm1" }
func (g *memGuests) MoRef() string         { return "vm-1" }
func (g *memGuests) Windows() bool         { return false }
func (g *memGuests) CanCreate(p string) error {
	return nil
}

func notFound(p string) error {
	return remote.Errorf("ListFilesInGuest", p, remote.ErrNotFound, "FileNotFound")
}

func (g *memGuests) Dir(ctx context.Context, dir string) ([]remote.GuestStat, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.files[dir]; f == nil || f.st.Type != remote.GuestDir {
		return nil, notFound(dir)
	}
	var out []remote.GuestStat
	for p, f := range g.files {
		if p != "/" && path.Dir(p) == dir {
			out = append(out, f.st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (g *memGuests) Lookup(ctx context.Context, dir, name string) (remote.GuestStat, error) {
	return g.Stat(ctx, path.Join(dir, name))
}

func (g *memGuests) Stat(ctx context.Context, p string) (remote.GuestStat, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.files[p]
	if f == nil {
		return remote.GuestStat{}, notFound(p)
	}
	return f.st, nil
}

func (g *memGuests) put(p string, t remote.GuestFileType, mode uint32, data []byte) remote.GuestStat {
	now := time.Now()
	st := remote.GuestStat{Name: path.Base(p), Type: t, Mode: mode, Size: int64(len(data)), Mtime: now, Atime: now}
	g.files[p] = &memGuestFile{st: st, data: data}
	return st
}

func (g *memGuests) Mkdir(ctx context.Context, p string, mode uint32) (remote.GuestStat, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.files[p] != nil {
		return remote.GuestStat{}, remote.Errorf("MakeDirectoryInGuest", p, remote.ErrExists, "FileAlreadyExists")
	}
	return g.put(p, remote.GuestDir, mode, nil), nil
}

func (g *memGuests) Rmdir(ctx context.Context, p string) error { return g.Remove(ctx, p) }

func (g *memGuests) Remove(ctx context.Context, p string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.files[p] == nil {
		return notFound(p)
	}
	delete(g.files, p)
	return nil
}

func (g *memGuests) MoveFile(ctx context.Context, src, dst string, overwrite bool) error {
	return g.MoveDir(ctx, src, dst)
}

// MoveDir moves src and everything under it.
func (g *memGuests) MoveDir(ctx context.Context, src, dst string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.files[src] == nil {
		return notFound(src)
	}
	for p, f := range g.files {
		if p == src || strings.HasPrefix(p, src+"/") {
			delete(g.files, p)
			np := dst + strings.TrimPrefix(p, src)
			f.st.Name = path.Base(np)
			g.files[np] = f
		}
	}
	return nil
}

func (g *memGuests) Chattr(ctx context.Context, p string, a remote.GuestAttr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.files[p]
	if f == nil {
		return notFound(p)
	}
	a.Apply(&f.st)
	return nil
}

func (g *memGuests) Upload(ctx context.Context, p string, r io.ReadSeeker, size int64, a remote.GuestAttr, replace bool) (remote.GuestStat, error) {
	b, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return remote.GuestStat{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.files[p] != nil && !replace {
		return remote.GuestStat{}, remote.Errorf("InitiateFileTransferToGuest", p, remote.ErrExists, "FileAlreadyExists")
	}
	mode := uint32(0o644)
	if f := g.files[p]; f != nil {
		mode = f.st.Mode
	}
	st := g.put(p, remote.GuestFile, mode, b)
	a.Apply(&st)
	g.files[p].st = st
	return st, nil
}

func (g *memGuests) Source(p string, size int64, mtime time.Time, origin string) cache.Source {
	g.mu.Lock()
	defer g.mu.Unlock()
	var b []byte
	if f := g.files[p]; f != nil {
		b = f.data
	}
	return &memSource{id: fmt.Sprintf("guest:%s#%d@%d", p, size, mtime.UnixNano()), b: b}
}

// fakeMount is an in-process mount of the tree over fakes.
type fakeMount struct {
	dir    string
	fs     *FS
	lib    *memLib
	guests *memGuests
}

// mountFakes mounts the tree over a memLib and a memGuests, with writes,
// in a temporary directory, and unmounts it when the test ends.
func mountFakes(t *testing.T, tune func(*Options, *Writes)) *fakeMount {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("these tests mount in process: %v", err)
	}
	tmp := t.TempDir()
	m := &fakeMount{dir: filepath.Join(tmp, "mnt"), lib: newMemLib(), guests: newMemGuests()}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := NewWrites(m.lib, filepath.Join(tmp, "staging"), filepath.Join(tmp, "recovery"), filepath.Join(tmp, "times"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cache.Options{BlockSize: 1 << 16, Bytes: 1 << 22, Dir: filepath.Join(tmp, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Catalog: m.lib, Downloads: m.lib, Guests: m.guests, Cache: c, Writes: w,
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		StagingDir: filepath.Join(tmp, "staging"), RecoveryDir: filepath.Join(tmp, "recovery"),
	}
	w.PickDatastore = func(context.Context) (string, error) { return "datastore-1", nil }
	if tune != nil {
		tune(&opts, w)
	}
	f, server, err := mount(m.dir, opts, false, false)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	m.fs = f
	var st syscall.Stat_t
	_ = syscall.Stat(m.dir, &st)
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			_ = syscall.Unmount(m.dir, syscall.MNT_DETACH)
			// A file a failed test left open would be flushed at this
			// process's exit, to the server it is: abort the connection,
			// or the test binary never exits.
			_ = os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", st.Dev), []byte("1"), 0)
		}
		w.Close(context.Background())
		c.Close()
	})
	return m
}

func (m *fakeMount) path(p string) string { return filepath.Join(m.dir, p) }
