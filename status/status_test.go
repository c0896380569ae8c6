package status

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The socket works in a folder whose path is longer than a socket address
// may be (108 bytes), and is 0600.
func TestServeDeepFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var tr Tracker
	l := tr.Begin("library download", "vc", "/cls/data/x/f", "streaming", 100)
	l.Add(40)
	s, err := Serve(dir, func() Snapshot { return Snapshot{PID: 7, Transfers: tr.Snapshot()} })
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %s: %v %v", s.Path(), fi, err)
	}
	got, err := QuerySocket(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != 7 || len(got.Transfers) != 1 || got.Transfers[0].Done != 40 || got.Transfers[0].Total != 100 {
		t.Errorf("got %+v", got)
	}
	l.End()
	if got, _ := QuerySocket(s.Path()); got == nil || len(got.Transfers) != 0 {
		t.Errorf("an ended transfer is still listed: %+v", got)
	}
	s.Close()
	if _, err := os.Stat(s.Path()); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}
