package fs

// Commits that wait: a file with a temporary name (isHeldTemp) until its
// rename, an OVF descriptor until the files it references are staged.

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func isOVF(name string) bool { return strings.EqualFold(filepath.Ext(name), ".ovf") }

// ovfReferences is the one part of an OVF envelope fs reads: the files in
// its References section (ovf:href; attributes match in any namespace).
// It is parsed here, not with govmomi's ovf package, so that fs imports no
// vSphere code.
type ovfReferences struct {
	Files []struct {
		Href string `xml:"href,attr"`
	} `xml:"References>File"`
}

// ovfRefs lists the files a staged .ovf references (none if it does not parse:
// then validation says why).
func ovfRefs(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var e ovfReferences
	if err := xml.NewDecoder(f).Decode(&e); err != nil {
		return nil
	}
	var refs []string
	for _, r := range e.Files {
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
