package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// lockedTempDir makes a folder for this mount under parent and holds a lock
// on it while the process lives, so that a later mount can tell a folder a
// dead mount left behind (unlocked) from a running mount's.
func lockedTempDir(parent, prefix string) (string, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", err
	}
	lock, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return "", err
	}
	// The descriptor stays open (and locked) until the process exits.
	return dir, nil
}

// removeStale removes the prefix* folders of parent that no running mount
// holds: spools are caches, and a dead mount's are of no use.
func removeStale(parent, prefix string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		lock, err := os.Open(p)
		if err != nil {
			continue
		}
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		lock.Close()
	}
}
