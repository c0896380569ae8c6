package fs

// Where the bytes of a failed commit go, and what a mount that died left
// (recovery.go has the layout and the index).

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vspherefs/vspherefs/remote"
)

// RescueStaged moves the staged files in dir, a staging folder of a mount
// that ended without Close (the cache dir's owner knows it is dead), into
// recovery/, each where its sidecar says it belongs (recovery/libraries/…,
// recovery/vms/…), or into recovery/staging-<time>/ without one; then it
// removes dir. Nothing is deleted: each file gets a line in recovery/INDEX
// and in the log. It returns where they went.
func RescueStaged(dir, recovery string, log *slog.Logger) []string {
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		if err == nil {
			os.Remove(dir) // a symlink or file where a folder should be: never followed
		}
		return nil
	}
	files, _ := os.ReadDir(dir)
	var kept []string
	for _, f := range files {
		if !f.Type().IsRegular() || strings.HasSuffix(f.Name(), originExt) || strings.HasSuffix(f.Name(), originExt+".tmp") {
			continue
		}
		src := filepath.Join(dir, f.Name())
		e, ok := readOrigin(src)
		if !ok {
			e = recovered{Tree: "unknown", Origin: "staging-" + time.Now().Format("20060102-150405") + "/" + f.Name()}
		}
		e.Time, e.Reason = time.Now(), "the mount that staged it ended before its commit"
		p, err := keepRecovered(recovery, src, -1, true, e)
		if err != nil {
			log.Error("staged file of an earlier mount not committed and not kept", "path", e.Origin, "staged", src, "fault", err.Error())
			continue
		}
		log.Warn("not committed: the mount that staged it ended first; kept", "path", e.Origin, "recovery", p)
		kept = append(kept, p)
	}
	os.RemoveAll(dir)
	return kept
}

// recover copies sf's bytes to recovery/libraries/<lib>/<item>/<name> (see
// recovery.go) and returns that path. A streamed file whose start was
// punched out of its staged copy keeps the bytes still here, and the index
// says from which offset (never zeros passed off as its start).
func (w *Writes) recover(itemPath, name string, sf *staged, reason, call, fault string) (string, error) {
	sf.mu.Lock()
	size, dropped := sf.size, sf.dropped
	sf.mu.Unlock()
	if dropped > 0 {
		reason += fmt.Sprintf("; bytes 0-%d were sent to the server while the file was written and are no longer here: this file holds bytes %d-%d", dropped, dropped, size)
	}
	e := libOrigin(itemPath, name)
	e.Reason, e.Call, e.Fault, e.Offset = reason, call, fault, dropped
	return sf.keep(w.recovery, size, e)
}

// keepFailed keeps the bytes of a file that can no longer be committed
// (its streamed upload failed, or it was rewritten behind what was sent) in
// recovery/, once, and logs one line naming the path, call and fault.
func (w *Writes) keepFailed(sf *staged, cause error) {
	sf.mu.Lock()
	done := sf.kept
	sf.kept = true
	sf.mu.Unlock()
	if done {
		return
	}
	w.mu.Lock()
	itemPath, name := sf.it.path, sf.name
	w.mu.Unlock()
	call, fault := "PUT", cause.Error()
	var be *remote.Error
	if errors.As(cause, &be) {
		call, fault = be.Call, be.Fault
		be.Reported() // this is its log line: the syscalls it fails add none
	}
	rec, err := w.recover(itemPath, name, sf, "commit failed", call, fault)
	if err != nil {
		rec = "not kept: " + err.Error()
	} else {
		w.mu.Lock()
		w.recovered = append(w.recovered, rec)
		w.mu.Unlock()
	}
	sf.mu.Lock()
	dropped := sf.dropped
	sf.mu.Unlock()
	args := []any{"path", itemPath + "/" + EncodeName(name), "call", call, "fault", fault, "recovery", rec}
	if dropped > 0 {
		args = append(args, "missing", fmt.Sprintf("bytes 0-%d (sent while written, no longer here)", dropped))
	}
	w.log().Error(syscall.EIO.Error(), args...)
}

// libOrigin is where the library file name of the item shown at itemPath
// belongs.
func libOrigin(itemPath, name string) recovered {
	return recovered{Tree: "libraries", Origin: itemPath + "/" + EncodeName(name), Name: name}
}

// writeOrigin records where sf belongs, next to its staged bytes.
func (sf *staged) writeOrigin(itemPath, name string) {
	sf.setOrigin(libOrigin(itemPath, name))
}
