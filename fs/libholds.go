package fs

// Commits that wait: a file with a temporary name (isHeldTemp) until its
// rename, an OVF descriptor until the files it references are staged.

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmware/govmomi/ovf"
)

func isOVF(name string) bool { return strings.EqualFold(filepath.Ext(name), ".ovf") }

// ovfRefs lists the files a staged .ovf references (none if it does not parse:
// then validation says why).
func ovfRefs(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	e, err := ovf.Unmarshal(f)
	if err != nil {
		return nil
	}
	var refs []string
	for _, r := range e.References {
		refs = append(refs, filepath.Base(r.Href))
	}
	return refs
}

// holdTimer commits a held temporary-named file under its own name if no
// rename comes; call with w.mu held.
func (w *Writes) holdTimer(sf *staged) {
	if sf.timer != nil || w.HoldTimeout <= 0 || w.closing {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(w.HoldTimeout, func() {
		w.mu.Lock()
		if sf.timer != t || sf.unlinked || !sf.ready || w.closing {
			w.mu.Unlock()
			return
		}
		sf.timer = nil
		name := sf.name
		w.mu.Unlock()
		_ = w.commitErrno(sf.it, []string{name}, nil)
	})
	sf.timer = t
}

// stopTimer cancels a hold timer; call with w.mu held.
func (w *Writes) stopTimer(sf *staged) {
	if sf.timer != nil {
		sf.timer.Stop()
	}
	sf.timer = nil
}
