package test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/vmware/govmomi/vapi/library"

	vfs "github.com/vspherefs/vspherefs/fs"
	"github.com/vspherefs/vspherefs/test/sim"
)

func serverLibraries(t *testing.T, s *sim.Server) []string {
	t.Helper()
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
	var out []string
	for _, l := range libs {
		out = append(out, l.Name)
	}
	sort.Strings(out)
	return out
}

func serverItems(t *testing.T, s *sim.Server, lib string) []string {
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
	items, err := lm.GetLibraryItems(c, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range items {
		out = append(out, it.Name)
	}
	sort.Strings(out)
	return out
}

func listed(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// TestNamesRoundTrip: every name mkdir, create and rename take in
// libraries/ is listed exactly as given and opens by that name; the names
// the rule cannot give back are EINVAL, and nothing reaches the server.
// In vms/ every name is the guest's own, byte for byte.
func TestNamesRoundTrip(t *testing.T) {
	s := sim.StartT(t)
	m := mount(t, s, "--guest-login", sim.GuestLoginString())
	long := strings.Repeat("n", 255)
	longEnc := strings.Repeat("n", 250) + "%25x" // 255 bytes as shown

	libsBefore := serverLibraries(t, s)
	for _, comp := range []string{"%25", "a%2Fb", "%2F", "héllo-日本", long, longEnc} {
		p := m.Path("libraries", comp)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Errorf("mkdir libraries/%s: %v", comp, err)
			continue
		}
		if !listed(t, m.Path("libraries"))[comp] {
			t.Errorf("libraries/%s is not listed as given", comp)
		}
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("stat libraries/%s: %v", comp, err)
		}
	}
	for _, comp := range []string{"%zz", "50%", "%2f", "%41", "a%"} {
		if err := os.Mkdir(m.Path("libraries", comp), 0o755); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("mkdir libraries/%s: %v, want EINVAL", comp, err)
		}
		if err := os.Mkdir(m.Path("libraries", "demo-library", comp), 0o755); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("mkdir libraries/demo-library/%s: %v, want EINVAL", comp, err)
		}
		if err := os.WriteFile(m.Path("libraries", "demo-library", "hello", "file"+comp+".txt"), []byte("x"), 0o644); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("create file%s.txt: %v, want EINVAL", comp, err)
		}
		if err := os.Rename(m.Path("libraries", "iso-library"), m.Path("libraries", comp)); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("rename to libraries/%s: %v, want EINVAL", comp, err)
		}
	}
	libsAfter := serverLibraries(t, s)
	want := append(append([]string(nil), libsBefore...), "%", "a/b", "/", "héllo-日本", long, vfs.DecodeName(longEnc))
	sort.Strings(want)
	if strings.Join(libsAfter, "|") != strings.Join(want, "|") {
		t.Errorf("libraries on the server:\n got %q\nwant %q", libsAfter, want)
	}
	if got := serverItems(t, s, "demo-library"); strings.Join(got, ",") != "big,empty,hello,multi" {
		t.Errorf("items after the refusals: %q", got)
	}

	// Items and files.
	for _, comp := range []string{"%25", "héllo-日本", long} {
		if err := os.Mkdir(m.Path("libraries", "demo-library", comp), 0o755); err != nil {
			t.Errorf("mkdir item %s: %v", comp, err)
		} else if !listed(t, m.Path("libraries", "demo-library"))[comp] {
			t.Errorf("item %s not listed as given", comp)
		}
	}
	for _, comp := range []string{"file%25.txt", "日本.txt", "100%25.txt"} {
		p := m.Path("libraries", "demo-library", "hello", comp)
		if err := os.WriteFile(p, []byte(comp), 0o644); err != nil {
			t.Errorf("write %s: %v\n%s", comp, err, m.Log())
			continue
		}
		if !listed(t, filepath.Dir(p))[comp] {
			t.Errorf("file %s not listed as given: %v", comp, listed(t, filepath.Dir(p)))
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != comp {
			t.Errorf("read %s: %q, %v", comp, b, err)
		}
	}
	if got := serverFiles(t, s, "demo-library", "hello"); strings.Join(got, ",") != "100%.txt,file%.txt,hello.txt,日本.txt" {
		t.Errorf("files on the server: %q", got)
	}

	// Guest names are the guest's own.
	dir := m.Path("vms", guestVM, "tmp")
	host := filepath.Join(guestHostDir(t, s, guestVM), "tmp")
	for _, name := range []string{"%", "%25", "%zz", "%2F", "50%", "héllo-日本", long} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Errorf("vms: write %q: %v", name, err)
			continue
		}
		if !listed(t, dir)[name] {
			t.Errorf("vms: %q not listed as given", name)
		}
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != name {
			t.Errorf("vms: read %q: %q, %v", name, b, err)
		}
		if b, err := os.ReadFile(filepath.Join(host, name)); err != nil || !bytes.Equal(b, []byte(name)) {
			t.Errorf("vms: %q in the guest: %q, %v", name, b, err)
		}
		sub := filepath.Join(dir, "d"+name)
		if len("d"+name) <= 255 {
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Errorf("vms: mkdir %q: %v", "d"+name, err)
			} else if fi, err := os.Stat(filepath.Join(host, "d"+name)); err != nil || !fi.IsDir() {
				t.Errorf("vms: dir %q in the guest: %v", "d"+name, err)
			}
		}
	}
}
