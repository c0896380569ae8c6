package fs

// Recovery: the bytes of writes that could not be committed (library and
// guest files alike) are kept under <cache-dir>/recovery with their origin:
//
//	recovery/libraries/<lib>/<item>/<file>
//	recovery/vms/<vm>/<guest path>
//	recovery/INDEX    one JSON line per kept file (see recovered)
//
// A path component too long for the local filesystem is shortened there
// (a hash of it appended) and the full path kept in the index; a name that
// is taken gets .1, .2, … appended. Each staged file has a small sidecar,
// <staged file>.origin, naming where it belongs, so that the next mount can
// put the staged files of a mount that died in the same places.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// recovered is one line of recovery/INDEX (and, without the last fields,
// a staged file's sidecar).
type recovered struct {
	Tree     string    `json:"tree"`           // libraries or vms
	Origin   string    `json:"origin"`         // path in the mount: libraries/<lib>/<item>/<file>, vms/<vm>/<guest path>
	Name     string    `json:"name,omitempty"` // a library file's name as the server has it
	Time     time.Time `json:"time"`
	Reason   string    `json:"reason,omitempty"`
	Call     string    `json:"call,omitempty"`  // the API call that failed
	Fault    string    `json:"fault,omitempty"` // the server's fault
	Recovery string    `json:"recovery,omitempty"`
	Size     int64     `json:"size"`
	// Offset is where in the file the kept bytes start: a streamed file
	// whose start was sent (and then dropped here) before its commit
	// failed keeps only the bytes from Offset on; Reason says so.
	Offset int64 `json:"offset,omitempty"`
}

// originExt is the suffix of a staged file's sidecar.
const originExt = ".origin"

var indexMu sync.Mutex // one writer of recovery/INDEX at a time in this process

// writeOrigin writes a staged file's sidecar (best effort: without it, the
// bytes are still rescued, under recovery/staging-<time>/).
func writeOrigin(staged string, e recovered) {
	e.Time = time.Now()
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	tmp := staged + originExt + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, staged+originExt)
	}
}

// readOrigin reads a staged file's sidecar.
func readOrigin(staged string) (recovered, bool) {
	var e recovered
	b, err := os.ReadFile(staged + originExt)
	if err != nil || json.Unmarshal(b, &e) != nil || e.Origin == "" {
		return e, false
	}
	return e, true
}

// localComponent shortens a path component that the local filesystem
// cannot hold (over 255 bytes; 240 leaves room for a ".N").
func localComponent(c string) string {
	switch c {
	case "", ".", "..":
		return EncodeName(c)
	}
	if len(c) <= 240 {
		return c
	}
	sum := sha256.Sum256([]byte(c))
	cut := 200
	for cut > 0 && !utf8.RuneStart(c[cut]) {
		cut--
	}
	return c[:cut] + "~" + hex.EncodeToString(sum[:8])
}

// keepRecovered puts bytes [e.Offset, size) of src (all if size < 0) at
// recovery/<e.Origin>, moving src there if move (else copying), appends
// e to recovery/INDEX and returns the path kept.
func keepRecovered(dir, src string, size int64, move bool, e recovered) (string, error) {
	parts := strings.Split(strings.Trim(e.Origin, "/"), "/")
	for i, p := range parts {
		parts[i] = localComponent(p)
	}
	base := filepath.Join(append([]string{dir}, parts...)...)
	if err := os.MkdirAll(filepath.Dir(base), 0o700); err != nil {
		return "", err
	}
	var dst *os.File
	var err error
	for i := 0; i < 10000; i++ {
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
	kept := dst.Name()
	moved := false
	if move {
		dst.Close()
		if os.Rename(src, kept) == nil {
			moved = true
		} else if dst, err = os.OpenFile(kept, os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
			return "", err
		}
	}
	if !moved {
		in, err := os.Open(src)
		if err != nil {
			dst.Close()
			return "", err
		}
		var r io.Reader = in
		if e.Offset > 0 {
			_, err = in.Seek(e.Offset, io.SeekStart)
		}
		if size >= 0 {
			r = io.LimitReader(in, size-e.Offset)
		}
		if err == nil {
			_, err = dst.ReadFrom(r) // copy_file_range where it can
		}
		in.Close()
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
	}
	if st, err := os.Stat(kept); err == nil {
		e.Size = st.Size()
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Recovery = kept
	if e.Tree == "" {
		e.Tree = parts[0]
	}
	line, err := json.Marshal(e)
	if err != nil {
		return kept, err
	}
	indexMu.Lock()
	defer indexMu.Unlock()
	f, err := os.OpenFile(filepath.Join(dir, "INDEX"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return kept, err
	}
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	return kept, err
}
