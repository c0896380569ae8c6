package fs

import "sort"

// StagedFile is a library file staged and not yet committed, for `vspherefs status`.
type StagedFile struct {
	Path  string `json:"path"`  // libraries/<lib>/<item>/<file>
	State string `json:"state"` // open, queued or held (rsync temporary, .ovf), committing
}

// Commits is how many commits are running or queued.
func (w *Writes) Commits() int64 {
	if w == nil {
		return 0
	}
	return w.running()
}

// Staged lists the library files staged and not committed.
func (w *Writes) Staged() []StagedFile {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []StagedFile
	for _, it := range w.items {
		for _, sf := range it.files {
			if sf.unlinked {
				continue
			}
			state := ""
			switch {
			case sf.inBatch:
				state = "committing"
			case sf.writers > 0:
				state = "open for writing"
			case sf.ready:
				state = "queued or held"
			default:
				continue
			}
			out = append(out, StagedFile{Path: it.path + "/" + sf.name, State: state})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
