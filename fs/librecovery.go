package fs

// Where the bytes of a failed commit go, and what a mount that died left.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

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
