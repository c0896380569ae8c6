package fs

import (
	"io"
	"os"
	"time"
)

// stagedFile is a file's local copy while it is written, in either tree: a
// file under <cache-dir>/staging, written and read in place (never whole in
// memory), with a sidecar naming its origin (recovery.go) so that the next
// mount can rescue it if this one dies. A library file (staged, staging.go)
// and a guest file (stage, guestwrite.go) embed one and add what only their
// tree needs.
//
// It has no lock of its own: its owner's lock guards it (staged.mu, with
// staged.io for the bytes; guestFile.mu for a stage), as the lock order in
// fs.go has it. f and path do not change after newStagedFile.
type stagedFile struct {
	f     *os.File
	path  string // f's name
	size  int64  // the file's size: f may be shorter, until loaded (guests)
	dirty bool   // bytes (or attributes) the server or guest does not have
	// mtime is the file's modification time while staged: the last write's
	// (or truncate's), unless the tree sets it otherwise (a library file's
	// utimens). Zero until then for a guest file, whose stat shows the
	// guest's time meanwhile.
	mtime time.Time
}

// newStagedFile makes an empty staged file in dir (its name pattern as
// os.CreateTemp's), with origin in its sidecar unless origin.Origin is ""
// (a guest file created before its node is in the tree: setOrigin then).
func newStagedFile(dir, pattern string, origin recovered) (stagedFile, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return stagedFile{}, err
	}
	s := stagedFile{f: f, path: f.Name()}
	if origin.Origin != "" {
		s.setOrigin(origin)
	}
	return s, nil
}

// setOrigin records where the file belongs (best effort), for a rescue if
// the mount dies before its commit.
func (s *stagedFile) setOrigin(origin recovered) {
	writeOrigin(s.path, origin)
}

// writeAt stores data at off: the size grows to cover it, and the file is
// dirty and modified now (if any of it was written).
func (s *stagedFile) writeAt(data []byte, off int64) (int, error) {
	n, err := s.f.WriteAt(data, off)
	if n > 0 {
		s.size = max(s.size, off+int64(n))
		s.dirty = true
		s.mtime = time.Now()
	}
	return n, err
}

// readAt reads the staged bytes at off, up to the size; bytes the local
// file does not hold within the size (a hole left by a truncate up) read
// as zeros.
func (s *stagedFile) readAt(dest []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, nil
	}
	if rest := s.size - off; int64(len(dest)) > rest {
		dest = dest[:rest]
	}
	n, err := s.f.ReadAt(dest, off)
	if err == io.EOF {
		clear(dest[n:])
		n, err = len(dest), nil
	}
	return n, err
}

// truncate sets the size; the file is dirty and modified now.
func (s *stagedFile) truncate(size int64) error {
	if err := s.f.Truncate(size); err != nil {
		return err
	}
	s.size = size
	s.dirty = true
	s.mtime = time.Now()
	return nil
}

// section is the staged bytes [0, size) as they are now, for an upload
// that reads them with the owner's lock released (the owner keeps them
// still meanwhile).
func (s *stagedFile) section() *io.SectionReader {
	return io.NewSectionReader(s.f, 0, s.size)
}

// keep copies bytes [e.Offset, size) of the staged file into the recovery
// folder dir at e.Origin, with e's reason, call and fault in
// recovery/INDEX (recovery.go), and returns the path kept. size is the
// caller's: read under the owner's lock, which need not be held across the
// copy if the bytes cannot change meanwhile.
func (s *stagedFile) keep(dir string, size int64, e recovered) (string, error) {
	return keepRecovered(dir, s.path, size, false, e)
}

// keptOrWhy is the path keep returned, or "(not kept: <why>)" for a log line.
func keptOrWhy(kept string, err error) string {
	if err != nil {
		return "(not kept: " + err.Error() + ")"
	}
	return kept
}

// remove closes the staged file and removes it with its sidecar.
func (s *stagedFile) remove() {
	s.f.Close()
	removeStaged(s.path)
}

// removeStaged removes a staged file and its sidecar.
func removeStaged(path string) {
	os.Remove(path)
	os.Remove(path + originExt)
}
