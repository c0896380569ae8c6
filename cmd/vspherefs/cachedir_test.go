package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestCacheDirLocks: two mounts' shares of one cache dir survive each
// other and the garbage collector; a dead mount's spool is removed and its
// staged files moved to recovery/.
func TestCacheDirLocks(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cache")
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a, err := openCacheDir(root, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := os.WriteFile(filepath.Join(a.Staging, "w-1"), []byte("a's"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A dead mount's leftovers, as a killed process leaves them.
	for _, d := range []string{"spool-dead", "staging/mount-dead"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "staging/mount-dead/f-1"), []byte("dead's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "locks/dead"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		runtime.GC() // a's lock file must not be collected and closed
	}
	b, err := openCacheDir(root, log)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID {
		t.Fatal("two mounts share an id")
	}
	if _, err := os.Stat(a.Spool); err != nil {
		t.Errorf("a's spool after b started: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(a.Staging, "w-1")); err != nil || string(got) != "a's" {
		t.Errorf("a's staged file after b started: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(root, "spool-dead")); !os.IsNotExist(err) {
		t.Errorf("the dead mount's spool: %v", err)
	}
	kept, _ := filepath.Glob(filepath.Join(root, "recovery", "staging-*", "f-1"))
	if len(kept) != 1 {
		t.Errorf("the dead mount's staged file in recovery: %v", kept)
	}
	b.Close()
	if _, err := os.Stat(b.Spool); !os.IsNotExist(err) {
		t.Errorf("b's spool after its close: %v", err)
	}
	if _, err := os.Stat(a.Spool); err != nil {
		t.Errorf("a's spool after b closed: %v", err)
	}
}

func TestCacheDirRefusals(t *testing.T) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := openCacheDir(open, log); err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Errorf("world-writable: %v", err)
	}
	for _, sub := range []string{"staging", "recovery", "locks"} {
		root := t.TempDir()
		victim := t.TempDir()
		if err := os.Symlink(victim, filepath.Join(root, sub)); err != nil {
			t.Fatal(err)
		}
		if _, err := openCacheDir(root, log); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("planted %s symlink: %v", sub, err)
		}
		if ents, _ := os.ReadDir(victim); len(ents) != 0 {
			t.Errorf("wrote through the %s symlink: %v", sub, ents)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/x\134y`: `/x\y`, `/end\04`: `/end\04`} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// A mount takes over the session records of a dead mount (for its library
// writer to end them) and leaves a running mount's alone; a mount of an
// earlier version, which locked its sessions folder itself, counts as
// running while it holds that lock.
func TestCacheDirSessionsInherited(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cache")
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	live, err := openCacheDir(root, log)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	old := filepath.Join(root, "sessions", "mount-123456")
	for _, d := range []string{filepath.Join(root, "sessions", "mount-dead"), old} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for p, item := range map[string]string{
		filepath.Join(root, "sessions", "mount-dead", "sid-dead"): "item-1",
		filepath.Join(live.Sessions, "sid-live"):                  "item-2",
		filepath.Join(old, "sid-old"):                             "item-3",
	} {
		if err := os.WriteFile(p, []byte(item+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lock, err := os.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	b, err := openCacheDir(root, log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, _ := os.ReadFile(filepath.Join(b.Sessions, "sid-dead")); string(got) != "item-1\n" {
		t.Fatalf("the dead mount's record was not taken over: %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, "sessions", "mount-dead")); !os.IsNotExist(err) {
		t.Fatalf("the dead mount's sessions folder is left: %v", err)
	}
	for _, p := range []string{filepath.Join(live.Sessions, "sid-live"), filepath.Join(old, "sid-old")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("a running mount's record was touched: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(b.Sessions, "sid-live")); !os.IsNotExist(err) {
		t.Fatal("a running mount's record was taken")
	}
}
