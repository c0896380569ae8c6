package fs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/vspherefs/vspherefs/remote"
)

// Writes is the write side of libraries/. A file opened for writing is
// staged under <cache-dir>/staging (random writes are local and cheap) and
// committed through an update session at every close and at fsync with
// unsaved writes: one session at a time per item, queued, and files waiting
// for the next session of an item go in together. A commit that fails leaves
// the item as it was and keeps the bytes in <cache-dir>/recovery.
type Writes struct {
	lw       LibraryWriter
	staging  string // this mount's staging folder
	recovery string
	times    *fileTimes // per-file modification times (libtimes.go)
	fs       *FS        // set by Mount

	// PickDatastore chooses the datastore of a library made by mkdir.
	PickDatastore func(ctx context.Context) (string, error)
	// StreamAfter is the size at which a file written in order from byte 0
	// starts its streamed upload (libstream.go); 0 (--upload=staged): every
	// file is staged whole and sent with its checksum first.
	StreamAfter int64
	// HoldTimeout is how long a closed file named like an rsync temporary
	// file waits for its rename before it is committed under its own name.
	HoldTimeout time.Duration

	ctx    context.Context // commits run on it: a commit is not interrupted halfway
	cancel context.CancelCauseFunc

	mu        sync.Mutex
	items     map[string]*itemWrites
	seq       uint64
	recovered []string // recovery files written, in order
	closing   bool

	commits // commits running or queued, both trees' (commits.go)
}

// NewWrites makes the write side, staging in this mount's own folder
// stagingDir, keeping the bytes of failed commits under recoveryDir and the
// times writers set under timesDir (the cache dir's layout, and what dead
// mounts left there, are cmd's business).
func NewWrites(lw LibraryWriter, stagingDir, recoveryDir, timesDir string) (*Writes, error) {
	w := &Writes{
		lw:          lw,
		staging:     stagingDir,
		recovery:    recoveryDir,
		times:       newFileTimes(timesDir),
		HoldTimeout: 30 * time.Second,
		StreamAfter: DefaultStreamAfter,
		items:       map[string]*itemWrites{},
	}
	// cmd changes StreamAfter (--upload=staged, the --test-stream-after
	// knob) and HoldTimeout (--test-hold-timeout): fs reads no environment.
	if err := os.MkdirAll(w.staging, 0o700); err != nil {
		return nil, err
	}
	w.ctx, w.cancel = context.WithCancelCause(context.Background())
	return w, nil
}

// errUnmountGaveUp is why the commits still running when unmount stops
// waiting (--timeout, or a second signal) are cancelled.
var errUnmountGaveUp = errors.New("unmount stopped waiting for the commit (--timeout passed, or a second signal)")

func (w *Writes) log() *slog.Logger {
	if w.fs != nil && w.fs.Log != nil {
		return w.fs.Log
	}
	return slog.Default()
}

// Busy says whether a commit is running or queued (unmount waits for it).
func (w *Writes) Busy() bool { return w != nil && w.commits.Busy() }

// itemWrites is the write state of one item.
type itemWrites struct {
	id, libID string
	path      string             // libraries/<lib>/<item> as shown, for logs and recovery; under Writes.mu
	files     map[string]*staged // by server-side name; under Writes.mu
	next      *batch             // files waiting for the next session; under Writes.mu
	// pending are server files renamed away (to another name, or to an
	// editor's backup name) whose removal goes with the item's next
	// session, so that the item is never without them meanwhile; hidden
	// here. Under Writes.mu.
	pending   map[string]bool
	pendTimer *time.Timer
	// stream is the file whose streamed upload holds the item's session;
	// heldForStream says files closed meanwhile wait for it. Under Writes.mu.
	stream        *staged
	heldForStream bool
	session       sync.Mutex // held while this item's update session runs
}

// batch is the content of one update session.
type batch struct {
	files  map[string]bool
	remove map[string]bool
	done   chan struct{}
	err    error
}

// staged is one file's local copy while it is open for writing or waits for
// its commit: its stagedFile (f, path; size, dirty, mtime under mu) and the
// library's own state.
type staged struct {
	stagedFile
	it  *itemWrites
	ino uint64
	// Under Writes.mu:
	name     string
	opens    int  // handles on it
	writers  int  // of which open for writing
	onServer bool // the item has (or had, when opened) a file of this name
	// localOnly: an editor's swap, backup or probe file (isLocalOnly): kept
	// here until unlinked or unmount, never committed.
	localOnly bool
	unlinked  bool // removed or renamed over: nothing more to commit
	ready     bool // closed with bytes to commit (queued, or held)
	inBatch   bool // a session is reading it
	timer     *time.Timer

	loaded chan struct{} // closed once the current bytes are in (open without O_TRUNC)
	loadEr error

	io sync.RWMutex // writes and truncates hold it shared; a commit holds it

	// mu guards what follows, and the stagedFile's size, dirty (changed
	// since the last commit, or never committed) and mtime (last write, or
	// what the writer set; recorded at the commit).
	mu     sync.Mutex
	failed bool // the last commit of these bytes failed: they are in recovery
	// Streamed uploads (libstream.go):
	up       *upstream // running
	noStream bool      // written out of order, or not to be streamed
	dropped  int64     // [0, dropped) was uploaded and is not in the staged file (punched out, or never there)
	broken   error     // cannot be committed any more (a rewrite behind dropped bytes)
	sealed   bool      // committed by its streamed upload with bytes dropped: no more writes
	kept     bool      // broken, and its bytes are in recovery/ (keepFailed)
	hash     hash.Hash // SHA256 of bytes [0, hashed) while writes are sequential (the open's load writes it under io alone)
	hashed   int64
}

// item returns the write state of an item, making it.
func (w *Writes) item(id, libID, path string) *itemWrites {
	w.mu.Lock()
	defer w.mu.Unlock()
	it := w.items[id]
	if it == nil {
		it = &itemWrites{id: id, libID: libID, path: path, files: map[string]*staged{}, pending: map[string]bool{}}
		w.items[id] = it
	} else if path != "" {
		it.path = path
	}
	return it
}

// find returns the live staged file of item/name, or nil.
func (w *Writes) find(itemID, name string) *staged {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if it := w.items[itemID]; it != nil {
		if sf := it.files[name]; sf != nil && !sf.sealedNow() && !sf.refusedLocked() {
			return sf
		}
	}
	return nil
}

// stagedNames lists the staged files of an item that the server does not have yet.
func (w *Writes) stagedNames(itemID string) map[string]*staged {
	out := map[string]*staged{}
	if w == nil {
		return out
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if it := w.items[itemID]; it != nil {
		for n, sf := range it.files {
			out[n] = sf
		}
	}
	return out
}

// isPending says whether a server file of the item was renamed away and
// waits for its removal (hidden meanwhile).
func (w *Writes) isPending(itemID, name string) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if it := w.items[itemID]; it != nil {
		return it.pending[name] && it.files[name] == nil
	}
	return false
}

// loader copies a file's current bytes into dst and knows their time; nil
// means the file is new.
type loader struct {
	copy  func(ctx context.Context, dst io.Writer) error
	mtime time.Time // a copy that only loads the bytes has not changed them
}

// open returns the staged copy of it/name for a new handle, making it if
// needed: empty if trunc or load is nil, else filled by load.
func (w *Writes) open(ctx context.Context, it *itemWrites, name string, write, trunc, onServer bool, load *loader) (*staged, error) {
	w.mu.Lock()
	sf := it.files[name]
	if sf != nil && sf.sealedNow() {
		// Committed by its streamed upload (the server has it): a new copy.
		sf.unlinked = true
		delete(it.files, name)
		sf = nil
	}
	fresh := sf == nil
	if fresh {
		w.seq++
		file, err := newStagedFile(w.staging, "f-*", libOrigin(it.path, name))
		if err != nil {
			w.mu.Unlock()
			return nil, err
		}
		file.mtime = time.Now()
		sf = &staged{stagedFile: file, it: it, name: name, ino: ino("staged", fmt.Sprintf("%s/%d", it.id, w.seq)),
			onServer: onServer, localOnly: isLocalOnly(name), loaded: make(chan struct{}), hash: sha256.New()}
		it.files[name] = sf
		if it.pending[name] {
			// Made again after its rename away: a new file that replaces
			// the server's (its removal is no longer needed).
			delete(it.pending, name)
			sf.onServer, load = true, nil
		}
		if load != nil && !trunc {
			sf.mtime = load.mtime
		}
		if !sf.onServer {
			sf.dirty = true // a new file is committed even if nothing is written
		}
	}
	sf.opens++
	if write {
		sf.writers++
		if sf.timer != nil {
			sf.timer.Stop()
			sf.timer = nil
		}
	}
	w.mu.Unlock()

	if fresh {
		if load != nil && !trunc {
			// The download holds the bytes lock only: the metadata lock
			// (sf.mu) is never held across network I/O. Nothing else
			// touches the bytes or the hash before sf.loaded is closed.
			sf.io.Lock()
			err := load.copy(ctx, io.MultiWriter(sf.f, sf.hash))
			if err == nil {
				var st os.FileInfo
				if st, err = sf.f.Stat(); err == nil {
					sf.mu.Lock()
					sf.size, sf.hashed = st.Size(), st.Size()
					sf.mu.Unlock()
				}
			}
			sf.io.Unlock()
			sf.loadEr = err
		}
		close(sf.loaded)
	} else {
		<-sf.loaded
		if write && sf.streaming() {
			// One writer streams: another would write out of its order.
			w.release(sf, write)
			return nil, syscall.EBUSY
		}
	}
	if sf.loadEr != nil {
		w.release(sf, write)
		return nil, sf.loadEr
	}
	if trunc {
		if err := w.truncate(ctx, sf, 0); err != nil {
			w.release(sf, write)
			return nil, err
		}
	}
	return sf, nil
}

// truncate sets the size of a staged file; a streamed upload goes on if
// the file grows (the hole is sent as zeros), and stops (the file is
// staged) if it shrinks.
func (w *Writes) truncate(ctx context.Context, sf *staged, size int64) error {
	for {
		stop, err := sf.truncateLocal(ctx, size)
		if stop {
			w.stopStream(sf)
			continue // not streaming any more
		}
		if err != nil && err == sf.brokenNow() {
			w.keepFailed(sf, err)
		}
		return err
	}
}

func (sf *staged) truncateLocal(ctx context.Context, size int64) (stop bool, err error) {
	sf.io.RLock()
	defer sf.io.RUnlock()
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.broken != nil {
		return false, sf.broken
	}
	if sf.sealed {
		return false, errSealed(sf.name)
	}
	if up := sf.up; up != nil {
		if size == sf.size {
			return false, nil
		}
		if size > sf.size && up.err == nil {
			if _, err := sf.appendStream(ctx, size-sf.size, nil); err != errStreamBroke {
				return false, err
			}
		}
		if size < sf.size {
			sf.noStream = true
		}
		return true, nil
	}
	if size < sf.size {
		sf.noStream = true
		if size < sf.dropped {
			sf.broken = remote.Errorf("truncate", sf.name, remote.ErrIO, "a truncate to %d bytes of a file whose first bytes were uploaded while it was written and are no longer here", size)
			return false, sf.broken
		}
	}
	return false, sf.truncateFile(size)
}

func (sf *staged) truncateFile(size int64) error {
	if err := sf.truncate(size); err != nil {
		return err
	}
	switch {
	case size == 0:
		sf.hash, sf.hashed = sha256.New(), 0
	case size != sf.hashed:
		sf.hash = nil
	}
	sf.failed = false
	return nil
}

// setMtime is utimens on a staged file: the time is kept for its commit.
func (sf *staged) setMtime(t time.Time) {
	sf.mu.Lock()
	sf.mtime = t
	sf.mu.Unlock()
}

func (sf *staged) stat() (size int64, mtime time.Time) {
	<-sf.loaded // until then the bytes are the server's, still coming (holding no lock)
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.size, sf.mtime
}

func (sf *staged) isDirty() bool {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.dirty
}

// attach adds a reading handle to the staged copy of it/name, if there is one.
func (w *Writes) attach(itemID, name string) *staged {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	it := w.items[itemID]
	if it == nil {
		return nil
	}
	sf := it.files[name]
	if sf == nil || sf.unlinked || sf.sealedNow() || sf.refusedLocked() {
		return nil
	}
	sf.opens++
	return sf
}

// release ends one handle on sf.
func (w *Writes) release(sf *staged, write bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sf.opens--
	if write {
		sf.writers--
	}
	if sf.opens > 0 || sf.inBatch {
		return
	}
	if sf.streaming() {
		// Its last handle went without a flush: finish its upload, nobody
		// is waiting for the outcome.
		end := w.start()
		go func() {
			defer end()
			_, _ = w.endStream(sf) // a failure is logged and recovered
		}()
		return
	}
	if err := sf.brokenNow(); err != nil && !sf.unlinked && !sf.localOnly {
		// Released without a flush that could report it: kept all the same.
		w.mu.Unlock()
		w.keepFailed(sf, err)
		w.mu.Lock()
	}
	if !sf.unlinked && !sf.localOnly && !sf.ready && sf.isDirty() && !sf.failedNow() && sf.loadEr == nil && sf.brokenNow() == nil {
		// Written without a flush (e.g. through a mapping): commit now,
		// nobody is waiting for the outcome.
		sf.ready = true
		it := sf.it
		end := w.start()
		go func() {
			defer end()
			if names, held := w.plan(w.ctx, it, sf); !held {
				_ = w.commit(it, names, nil)
			}
		}()
		return
	}
	w.settleLocked(sf)
}

func (sf *staged) brokenNow() error {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.broken
}

func (sf *staged) failedNow() bool {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.failed
}

// refusedLocked says whether the server refused sf's bytes (its last commit
// failed, nothing changed since) over a file it has: lookups, stat and new
// opens then see the server's version, not bytes it does not have, while
// the handles still open for writing keep the staged copy (their next close
// commits it again). Call with Writes.mu held.
func (sf *staged) refusedLocked() bool {
	return sf.onServer && sf.failedNow()
}

// settleLocked drops sf once nothing needs it; call with w.mu held.
func (w *Writes) settleLocked(sf *staged) {
	if sf.opens > 0 || sf.inBatch || (sf.ready && !sf.unlinked) || (sf.localOnly && !sf.unlinked) {
		return
	}
	if cur := sf.it.files[sf.name]; cur == sf {
		delete(sf.it.files, sf.name)
	}
	w.stopTimerLocked(sf)
	sf.remove()
}

// unlink forgets a staged file of name (removed, or replaced by a rename).
// It returns whether there was one; call with w.mu held.
func (w *Writes) unlinkLocked(it *itemWrites, name string) *staged {
	sf := it.files[name]
	if sf == nil {
		return nil
	}
	sf.unlinked = true
	sf.ready = false
	delete(it.files, name)
	w.stopTimerLocked(sf)
	w.settleLocked(sf)
	return sf
}

// renameItem keeps the shown path of an item's write state in step.
func (w *Writes) renameItem(itemID, path string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if it := w.items[itemID]; it != nil {
		it.path = path
		for n, sf := range it.files {
			sf.writeOrigin(path, n)
		}
	}
}

// hasStaged says whether an item has staged files that are not unlinked.
func (w *Writes) hasStaged(itemID string) bool {
	return len(w.stagedNames(itemID)) > 0
}

// Close waits for the commits in flight, then commits what is still held
// (rsync-temp-named files under their own names, OVF items as they stand, and
// bytes written but never flushed). It returns the recovery files of the
// commits that failed here, so that the caller can list them and exit non-zero.
func (w *Writes) Close(ctx context.Context) []string {
	w.mu.Lock()
	start := len(w.recovered)
	w.closing = true
	for _, it := range w.items {
		for _, sf := range it.files {
			w.stopTimerLocked(sf)
		}
	}
	var streams []*staged
	for _, it := range w.items {
		if it.stream != nil {
			streams = append(streams, it.stream)
		}
	}
	w.mu.Unlock()
	for _, sf := range streams {
		// Held open past the unmount: ended with what was written (a
		// failure is logged and recovered; staged: committed below). They
		// run side by side, bounded by ctx as every commit here.
		end := w.start()
		go func() {
			defer end()
			_, _ = w.finishStream(w.ctx, sf)
		}()
	}
	w.wait(ctx)
	if ctx.Err() != nil {
		// Out of time (or forced): the commits still running fail now and
		// keep their bytes in recovery/, as do the ones below.
		w.cancel(errUnmountGaveUp)
		w.wait(context.Background())
	}
	w.mu.Lock()
	var items []*itemWrites
	for _, it := range w.items {
		items = append(items, it)
	}
	w.mu.Unlock()
	for _, it := range items {
		w.mu.Lock()
		var names []string
		var broken []*staged
		for n, sf := range it.files {
			if !sf.unlinked && !sf.localOnly && sf.brokenNow() != nil {
				broken = append(broken, sf)
			}
			if !sf.unlinked && !sf.localOnly && sf.brokenNow() == nil && (sf.ready || (sf.isDirty() && !sf.failedNow())) {
				sf.ready = true
				names = append(names, n)
			}
		}
		pending := len(it.pending)
		if it.pendTimer != nil {
			it.pendTimer.Stop()
		}
		w.mu.Unlock()
		for _, sf := range broken {
			w.keepFailed(sf, sf.brokenNow()) // once: a no-op for those already kept
		}
		if len(names) == 0 && pending == 0 {
			continue
		}
		_ = w.commit(it, names, nil) // a failure is logged and recovered
	}
	w.cancel(errUnmountGaveUp)
	w.times.flush()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, it := range w.items {
		for _, sf := range it.files {
			sf.remove()
		}
	}
	if rest, _ := os.ReadDir(w.staging); len(rest) == 0 {
		os.RemoveAll(w.staging)
	}
	return append([]string(nil), w.recovered[start:]...)
}
