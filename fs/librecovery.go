package fs

// Where the bytes of a failed commit go, and what a mount that died left
// (recovery.go has the layout and the index).

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// rescue moves the staged files of earlier mounts that ended without Close
// (their folder is no longer locked) into recovery/, each where its sidecar
// says it belongs (recovery/libraries/…, recovery/vms/…), or into
// recovery/staging-<time>/ without one: this mount does not commit them, and
// nothing is deleted. Each gets a line in recovery/INDEX and in the log.
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
		for _, f := range files {
			if strings.HasSuffix(f.Name(), originExt) || strings.HasSuffix(f.Name(), originExt+".tmp") {
				continue
			}
			src := filepath.Join(p, f.Name())
			e, ok := readOrigin(src)
			if !ok {
				e = recovered{Tree: "unknown", Origin: "staging-" + time.Now().Format("20060102-150405") + "/" + f.Name()}
			}
			e.Time, e.Reason = time.Now(), "the mount that staged it ended before its commit"
			kept, err := keepRecovered(w.recovery, src, -1, true, e)
			if err != nil {
				slog.Error("staged file of an earlier mount not committed and not kept", "path", e.Origin, "staged", src, "fault", err.Error())
				continue
			}
			slog.Warn("not committed: the mount that staged it ended first; kept", "path", e.Origin, "recovery", kept)
		}
		os.RemoveAll(p)
		lock.Close()
	}
}

// recover copies sf's bytes to recovery/libraries/<lib>/<item>/<name> (see
// recovery.go) and returns that path.
func (w *Writes) recover(itemPath, name string, sf *staged, reason, call, fault string) (string, error) {
	sf.mu.Lock()
	size := sf.size
	sf.mu.Unlock()
	return keepRecovered(w.recovery, sf.path, size, false, recovered{
		Tree: "libraries", Origin: itemPath + "/" + EncodeName(name), Name: name,
		Reason: reason, Call: call, Fault: fault,
	})
}

// writeOrigin records where sf belongs, next to its staged bytes.
func (sf *staged) writeOrigin(itemPath, name string) {
	writeOrigin(sf.path, recovered{Tree: "libraries", Origin: itemPath + "/" + EncodeName(name), Name: name})
}

// removeStaged removes a staged file and its sidecar.
func removeStaged(path string) {
	os.Remove(path)
	os.Remove(path + originExt)
}
