package fs

// Where the bytes of a failed commit go, and what a mount that died left.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// rescue moves the staged files of earlier mounts that ended without Close
// (their folder is no longer locked) to recovery/staging-<time>/: this mount
// does not commit them, and nothing is deleted.
func (w *Writes) rescue() {
	dirs, _ := os.ReadDir(w.staging)
	for _, d := range dirs {
		p := filepath.Join(w.staging, d.Name())
		if !d.IsDir() || !(strings.HasPrefix(d.Name(), "libraries-") || strings.HasPrefix(d.Name(), "mount-")) {
			continue // library writes stage in libraries-*, guest writes in mount-*
		}
		lock, err := os.Open(p)
		if err != nil {
			continue
		}
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			lock.Close() // a running mount's
			continue
		}
		files, _ := os.ReadDir(p)
		var kept []string
		for _, f := range files {
			dst := filepath.Join(w.recovery, "staging-"+time.Now().Format("20060102-150405"))
			if os.MkdirAll(dst, 0o700) == nil && os.Rename(filepath.Join(p, f.Name()), filepath.Join(dst, f.Name())) == nil {
				kept = append(kept, filepath.Join(dst, f.Name()))
			}
		}
		if len(kept) > 0 {
			slog.Warn("staged files of an earlier mount that did not finish were not committed; kept", "files", strings.Join(kept, " "))
		}
		os.RemoveAll(p)
		lock.Close()
	}
}

// recover copies sf's bytes to recovery/libraries/<lib>/<item>/<name> (with
// a number added if taken) and returns that path.
func (w *Writes) recover(itemPath, name string, sf *staged) (string, error) {
	dir := filepath.Join(w.recovery, filepath.FromSlash(itemPath))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	base := filepath.Join(dir, EncodeName(name))
	var dst *os.File
	var err error
	for i := 0; i < 1000; i++ {
		p := base
		if i > 0 {
			p = fmt.Sprintf("%s.%d", base, i)
		}
		dst, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", err
	}
	src, err := os.Open(sf.path)
	if err != nil {
		dst.Close()
		return "", err
	}
	defer src.Close()
	sf.mu.Lock()
	size := sf.size
	sf.mu.Unlock()
	if _, err := dst.ReadFrom(io.LimitReader(src, size)); err != nil { // copy_file_range where it can
		dst.Close()
		return "", err
	}
	return dst.Name(), dst.Close()
}
