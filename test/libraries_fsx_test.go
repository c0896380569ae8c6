package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

// TestLibraryRandomOps is an fsx-like run in one library item: random opens
// (O_TRUNC, O_APPEND, O_RDWR, created), writes at random offsets, truncates,
// read-backs, closes, renames (over other files too), removes and editor
// scratch files, checked against a model after every step: through the
// mount, and on the server through govmomi after every close and rename.
func TestLibraryRandomOps(t *testing.T) {
	t.Parallel()
	libraryRandomOps(t)
}

// TestLibraryRandomOpsStreamed is the same with every file of 64 KiB
// streamed (libstream.go), so that rewrites, truncates, renames and
// reopens meet uploads in progress.
func TestLibraryRandomOpsStreamed(t *testing.T) {
	t.Parallel()
	m := libraryRandomOps(t, "--debug", "--test-stream-after", "65536")
	if !strings.Contains(m.Log(), "committed (streamed)") || !strings.Contains(m.Log(), "msg=committed ") {
		t.Fatal("no file was committed streamed, or none staged")
	}
}

func libraryRandomOps(t *testing.T, args ...string) *Mount {
	s := sim.StartT(t)
	m := mount(t, s, args...)
	// The seeds run at once, each in its own item: the mount meets
	// concurrent sessions, and the test takes half the time.
	t.Run("seeds", func(t *testing.T) {
		for _, seed := range []uint64{1, 2, 3, 4, 5} {
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				t.Parallel()
				name := fmt.Sprintf("fsx%d", seed)
				if err := os.Mkdir(m.Path("libraries", "demo-library", name), 0o755); err != nil {
					t.Fatal(err)
				}
				randomOps(t, s, m, name, seed, 60)
			})
		}
	})
	return m
}

func randomOps(t *testing.T, s *sim.Server, m *Mount, itemName string, seed uint64, ops int) {
	item := m.Path("libraries", "demo-library", itemName)
	r := rand.New(rand.NewPCG(seed, 99))
	names := []string{"a.bin", "b.bin", "c.txt", "d.dat", "e.bin~"} // the last is editor scratch: never on the server
	model := map[string][]byte{}
	// A file renamed to a scratch name leaves the server with the item's
	// next session (so that an editor's rename-and-rewrite keeps the item
	// whole): until then the server still has it.
	pending := map[string][]byte{}
	local := func(n string) bool { return strings.HasSuffix(n, "~") }
	session := func() { // an op that makes a session of the item
		for n := range pending {
			delete(pending, n)
		}
	}
	checkServer := func(step int, what string) {
		t.Helper()
		want := map[string][]byte{}
		for n, b := range pending {
			want[n] = b
		}
		for n, b := range model {
			if !local(n) {
				want[n] = b
			}
		}
		var names []string
		for n := range want {
			names = append(names, n)
		}
		sort.Strings(names)
		if got := serverFiles(t, s, "demo-library", itemName); strings.Join(got, ",") != strings.Join(names, ",") {
			t.Fatalf("step %d (%s): server has %v, want %v", step, what, got, names)
		}
		for _, n := range names {
			if got, err := s.Download(ctx(t), "demo-library", itemName, n); err != nil || !bytes.Equal(got, want[n]) {
				t.Fatalf("step %d (%s): server's %s is %d bytes (%v), want %d; first difference at byte %d", step, what, n, len(got), err, len(want[n]), firstDiff(got, want[n]))
			}
		}
	}
	existing := func() []string {
		var out []string
		for n := range model {
			out = append(out, n)
		}
		sort.Strings(out)
		return out
	}
	for step := 0; step < ops; step++ {
		switch op := r.IntN(10); {
		case op < 6: // open, write, maybe truncate and read back, close
			n := names[r.IntN(len(names))]
			cur, had := model[n]
			flags := []int{os.O_RDWR | os.O_CREATE, os.O_WRONLY | os.O_TRUNC | os.O_CREATE, os.O_RDWR | os.O_APPEND | os.O_CREATE, os.O_RDWR | os.O_CREATE | os.O_TRUNC}[r.IntN(4)]
			f, err := os.OpenFile(filepath.Join(item, n), flags, 0o644)
			if err != nil {
				t.Fatalf("step %d: open %s: %v", step, n, err)
			}
			defer f.Close() // if the test fails before its close: the mount must unmount
			data := append([]byte(nil), cur...)
			if !had || flags&os.O_TRUNC != 0 {
				data = nil
			}
			for range r.IntN(4) + 1 {
				b := randBytes(r.Uint64(), r.IntN(20000)+1)
				off := int64(len(data))
				if flags&os.O_APPEND == 0 {
					off = r.Int64N(int64(len(data)) + 5000)
					_, err = f.WriteAt(b, off)
				} else {
					_, err = f.Write(b)
				}
				if err != nil {
					t.Fatalf("step %d: write %s: %v", step, n, err)
				}
				if end := int(off) + len(b); end > len(data) {
					data = append(data, make([]byte, end-len(data))...)
				}
				copy(data[off:], b)
			}
			if flags&os.O_APPEND == 0 && r.IntN(4) == 0 {
				size := r.IntN(len(data) + 1)
				if err := f.Truncate(int64(size)); err != nil {
					t.Fatalf("step %d: ftruncate %s: %v", step, n, err)
				}
				data = data[:size]
			}
			if flags&syscall.O_ACCMODE == os.O_RDWR {
				got := make([]byte, len(data)+10)
				k, err := f.ReadAt(got, 0)
				if (err != nil && err != io.EOF) || !bytes.Equal(got[:k], data) {
					t.Fatalf("step %d: read back %s: %d bytes (%v), want %d", step, n, k, err, len(data))
				}
			}
			if err := f.Close(); err != nil {
				t.Fatalf("step %d: close %s: %v", step, n, err)
			}
			model[n] = data
			if !local(n) {
				session()
			}
			checkServer(step, "write "+n)
		case op < 8: // rename within the item
			ex := existing()
			if len(ex) == 0 {
				continue
			}
			from, to := ex[r.IntN(len(ex))], names[r.IntN(len(names))]
			if from == to {
				continue
			}
			if err := os.Rename(filepath.Join(item, from), filepath.Join(item, to)); err != nil {
				t.Fatalf("step %d: rename %s %s: %v", step, from, to, err)
			}
			_, serverHad := pending[from]
			serverHad = serverHad || !local(from)
			switch {
			case local(to) && serverHad && !local(from):
				pending[from] = model[from] // leaves with the next session
			case !local(to):
				session()
			}
			delete(pending, to)
			model[to] = model[from]
			delete(model, from)
			checkServer(step, "rename "+from+" "+to)
		case op < 9: // remove
			ex := existing()
			if len(ex) == 0 {
				continue
			}
			n := ex[r.IntN(len(ex))]
			if err := os.Remove(filepath.Join(item, n)); err != nil {
				t.Fatalf("step %d: rm %s: %v", step, n, err)
			}
			delete(model, n)
			if !local(n) {
				session()
			}
			checkServer(step, "rm "+n)
		default: // the mount reads the model
			for _, n := range names {
				got, err := os.ReadFile(filepath.Join(item, n))
				want, ok := model[n]
				if !ok {
					if !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("step %d: %s should not exist: %v", step, n, err)
					}
					continue
				}
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("step %d: mount reads %s as %d bytes (%v), want %d", step, n, len(got), err, len(want))
				}
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(item, n), &st); err != nil || st.Size != int64(len(want)) {
					t.Fatalf("step %d: stat %s: size %d (%v), want %d", step, n, st.Size, err, len(want))
				}
			}
		}
	}
}

// firstDiff is the offset of the first byte where a and b differ (the
// shorter one's length if one is a prefix of the other).
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
