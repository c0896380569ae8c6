package test

// A random-operation test in the manner of fsx (xfstests' ltp/fsx.c, run as
// `fsx -c 10 -W -R`): writes at random offsets, truncations up and down and
// read-backs on one file, closed and reopened every few operations (so each
// close is a commit), checked at every step against a local model.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

// fsxRun runs n random operations on path, reopening it every closeEvery
// operations, and returns the bytes it must hold.
func fsxRun(t *testing.T, path string, seed uint64, n, closeEvery int, maxLen int64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var model []byte
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer func() { f.Close() }()
	check := func(op int, what string) {
		t.Helper()
		st, err := f.Stat()
		if err != nil {
			t.Fatalf("op %d (%s): fstat: %v", op, what, err)
		}
		if st.Size() != int64(len(model)) {
			t.Fatalf("op %d (%s): size %d, model %d", op, what, st.Size(), len(model))
		}
	}
	var trace []string // the last operations, for a failure
	defer func() {
		if t.Failed() {
			t.Logf("last operations:\n%s", strings.Join(trace[max(0, len(trace)-15):], "\n"))
		}
	}()
	for op := 1; op <= n; op++ {
		var what string
		switch k := r.IntN(10); {
		case k < 5: // write
			off := r.Int64N(maxLen)
			ln := min(1+r.Int64N(64<<10), maxLen-off)
			b := make([]byte, ln)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			what = fmt.Sprintf("write %d@%d", ln, off)
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatalf("op %d (%s): %v", op, what, err)
			}
			if end := off + ln; end > int64(len(model)) {
				model = append(model, make([]byte, end-int64(len(model)))...)
			}
			copy(model[off:], b)
		case k < 7: // truncate
			size := r.Int64N(maxLen)
			what = fmt.Sprintf("truncate %d", size)
			if err := f.Truncate(size); err != nil {
				t.Fatalf("op %d (%s): %v", op, what, err)
			}
			if size < int64(len(model)) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-int64(len(model)))...)
			}
		default: // read
			off := int64(0)
			if len(model) > 0 {
				off = r.Int64N(int64(len(model)))
			}
			ln := min(1+r.Int64N(64<<10), int64(len(model))-off)
			what = fmt.Sprintf("read %d@%d", ln, off)
			b := make([]byte, ln)
			if m, err := f.ReadAt(b, off); int64(m) != ln || err != nil && m != len(b) {
				t.Fatalf("op %d (%s): %d bytes, %v", op, what, m, err)
			}
			if !bytes.Equal(b, model[off:off+ln]) {
				t.Fatalf("op %d (%s): bytes differ from the model", op, what)
			}
		}
		trace = append(trace, fmt.Sprintf("%d: %s (size %d)", op, what, len(model)))
		check(op, what)
		if op%closeEvery == 0 {
			trace = append(trace, "close, reopen")
			if err := f.Close(); err != nil {
				t.Fatalf("op %d: close: %v", op, err)
			}
			if f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
				t.Fatalf("op %d: reopen: %v", op, err)
			}
			check(op, "reopen")
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("last close: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, model) {
		t.Fatalf("read back through the mount: %d bytes (model %d), %v", len(got), len(model), err)
	}
	return model
}

// TestRandomOpsGuest: fsx-like runs on one guest file, several seeds; the
// guest has the model's bytes after each, and the folder stays usable.
func TestRandomOpsGuest(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	host := guestHostDir(t, s, guestVM)
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			// One file for every run, removed before each as fsx does.
			name := "fsx.bin"
			if err := os.Remove(m.Path("vms", guestVM, "tmp", name)); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			model := fsxRun(t, m.Path("vms", guestVM, "tmp", name), seed, 300, 10, 256<<10)
			if got, err := os.ReadFile(filepath.Join(host, "tmp", name)); err != nil || !bytes.Equal(got, model) {
				t.Fatalf("guest has %d bytes (model %d), %v", len(got), len(model), err)
			}
		})
	}
	if _, err := os.ReadDir(m.Path("vms", guestVM, "tmp")); err != nil {
		t.Fatalf("ls of the folder: %v", err)
	}
	if err := os.WriteFile(m.Path("vms", guestVM, "tmp", "after.txt"), []byte("after"), 0o644); err != nil {
		t.Fatalf("create in the folder after the runs: %v\n%s", err, m.Log())
	}
}

// TestRandomOpsLibrary: the same in a library item; the server has the
// model's bytes after each run.
func TestRandomOpsLibrary(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	m := mount(t, s)
	for _, seed := range []uint64{4, 5, 6} {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			name := "fsx.bin"
			if err := os.Remove(m.Path("libraries", "demo-library", "hello", name)); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			model := fsxRun(t, m.Path("libraries", "demo-library", "hello", name), seed, 150, 10, 256<<10)
			if got, err := s.Download(ctx(t), "demo-library", "hello", name); err != nil || !bytes.Equal(got, model) {
				t.Fatalf("server has %d bytes (model %d), %v", len(got), len(model), err)
			}
		})
	}
}
