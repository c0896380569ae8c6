package sim

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

// guestPath is where transfer URLs point: the path a real ESX host uses
// (https://*/guestFile?id=..&token=..). vcsim's own docker-backed handler
// has the subtree /guestFile/, so this exact path is ours.
const guestPath = "/guestFile"

// urlLifetime is how long a transfer URL stays valid (seed 000).
const urlLifetime = 10 * time.Minute

// ticket is one transfer URL. It is good for a single request: a GET or PUT
// that gets as far as the body uses it up, whatever happens next.
type ticket struct {
	token   string
	vm      *guestVM
	epoch   int64 // vm.epoch when issued: a power-off since kills the URL
	path    string
	put     bool
	created time.Time
	busy    bool // a request holds it; a concurrent one is refused
	used    bool

	size      int64 // PUT: the size announced to InitiateFileTransferToGuest
	overwrite bool
	attr      types.BaseGuestFileAttributes
}

// issue records a ticket and returns its URL, host "*" as seed 000 says.
func (g *Guest) issue(t *ticket, scheme string) string {
	t.created = g.now()
	t.epoch = t.vm.epoch.Load()
	t.token = randomHex(16)
	id := randomHex(8)
	g.mu.Lock()
	for k, old := range g.tickets { // forget what can no longer be used
		if old.used || g.now().Sub(old.created) > urlLifetime {
			delete(g.tickets, k)
		}
	}
	g.tickets[id] = t
	g.mu.Unlock()
	return (&url.URL{
		Scheme:   scheme,
		Host:     "*",
		Path:     guestPath,
		RawQuery: url.Values{"id": {id}, "token": {t.token}}.Encode(),
	}).String()
}

// take claims the ticket a request names, or says why not with a status.
func (g *Guest) take(r *http.Request, put bool) (*ticket, int) {
	q := r.URL.Query()
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.tickets[q.Get("id")]
	switch {
	case !ok || t.token != q.Get("token") || t.put != put || t.used:
		return nil, http.StatusNotFound
	case g.now().Sub(t.created) > urlLifetime || t.vm.epoch.Load() != t.epoch:
		delete(g.tickets, q.Get("id"))
		return nil, http.StatusNotFound
	case t.busy:
		return nil, http.StatusConflict
	}
	t.busy = true
	return t, http.StatusOK
}

// release ends a request's hold; used marks the URL dead for good.
func (g *Guest) release(t *ticket, used bool) {
	g.mu.Lock()
	t.busy = false
	t.used = t.used || used
	g.mu.Unlock()
}

// alive says whether a transfer in flight may go on: not past the URL's
// lifetime, no power-off since it was issued.
func (g *Guest) alive(t *ticket) bool {
	return g.now().Sub(t.created) <= urlLifetime && t.vm.epoch.Load() == t.epoch
}

func (g *Guest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	put := r.Method == http.MethodPut
	if !put && r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	t, status := g.take(r, put)
	if status != http.StatusOK {
		g.count(func(s *GuestStats) { s.Refused++ })
		http.Error(w, http.StatusText(status), status)
		return
	}
	if put {
		g.servePut(w, r, t)
	} else {
		g.serveGet(w, t)
	}
}

func (g *Guest) serveGet(w http.ResponseWriter, t *ticket) {
	fi, f := t.vm.fs.regular(t.path)
	if f != nil {
		g.release(t, false)
		http.NotFound(w, nil)
		return
	}
	n, _ := t.vm.fs.name(t.path)
	fh, err := t.vm.fs.root.Open(n)
	if err != nil {
		g.release(t, false)
		http.NotFound(w, nil)
		return
	}
	defer fh.Close()
	defer g.release(t, true)
	g.count(func(s *GuestStats) { s.Gets++ })
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	var sent int64
	err = g.pump(t, w, io.LimitReader(fh, fi.Size()), &sent)
	g.count(func(s *GuestStats) { s.GetBytes += sent })
	if err != nil {
		panic(http.ErrAbortHandler) // cut the connection: the client sees a short body
	}
}

// pump copies in chunks, stopping when the URL dies (expiry, power-off)
// and pacing to the configured rate.
func (g *Guest) pump(t *ticket, dst io.Writer, src io.Reader, n *int64) error {
	buf := make([]byte, 256<<10)
	start := time.Now()
	for {
		if !g.alive(t) {
			return errors.New("transfer URL no longer valid")
		}
		if rate := g.rate.Load(); rate > 0 {
			if ahead := time.Duration(float64(*n)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
			if int64(len(buf)) > rate/10+1 {
				buf = buf[:rate/10+1] // about ten chunks a second
			}
		}
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, err := dst.Write(buf[:k]); err != nil {
				return err
			}
			*n += int64(k)
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// servePut writes the body to the VM's spool and renames it into place only
// once all of it arrived, so a PUT that fails leaves the old file intact.
func (g *Guest) servePut(w http.ResponseWriter, r *http.Request, t *ticket) {
	defer g.release(t, true)
	gfs := t.vm.fs
	dst, f := gfs.name(t.path)
	if f == nil {
		f = g.putAllowed(t)
	}
	if f != nil {
		http.Error(w, "cannot write "+t.path, http.StatusConflict)
		return
	}
	old, oldErr := gfs.root.Stat(dst)
	tmp := "spool/" + randomHex(8)
	fh, err := gfs.root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer gfs.root.Remove(tmp) // a no-op once renamed
	var body io.Reader = r.Body
	if pf, ok := g.puts.next(); ok {
		if g.injectPut(w, r, t, pf) {
			return
		}
	}
	if fail := g.failPut.Swap(-1); fail >= 0 {
		body = &failingReader{r: r.Body, left: fail}
	} else if fail := g.failPuts.Load(); fail >= 0 {
		body = &failingReader{r: r.Body, left: fail}
	}
	var n int64
	err = g.pump(t, fh, io.LimitReader(body, t.size+1), &n)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != t.size {
		err = errors.New("body is not the size announced")
	}
	if err != nil {
		http.Error(w, "upload failed", http.StatusInternalServerError)
		return
	}
	if err := gfs.root.Rename(tmp, dst); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	g.applyPutAttr(t, old, oldErr)
	g.count(func(s *GuestStats) { s.Puts++ })
	w.WriteHeader(http.StatusOK)
}

// putAllowed repeats InitiateFileTransferToGuest's checks at PUT time: the
// guest may have changed since.
func (g *Guest) putAllowed(t *ticket) types.BaseMethodFault {
	n, f := t.vm.fs.name(t.path)
	if f != nil {
		return f
	}
	fi, err := t.vm.fs.root.Lstat(n)
	switch {
	case err == nil && fi.IsDir():
		return &types.NotAFile{FileFault: types.FileFault{File: t.path}}
	case err == nil && !t.overwrite:
		return &types.FileAlreadyExists{FileFault: types.FileFault{File: t.path}}
	case err == nil && t.vm.fs.readOnly(fi):
		return new(types.GuestPermissionDenied)
	case err != nil && !os.IsNotExist(err):
		return osFault(err, t.path)
	}
	parent, err := t.vm.fs.root.Stat(dirName(n))
	if err != nil {
		return osFault(err, t.path)
	}
	if !parent.IsDir() {
		return &types.NotADirectory{FileFault: types.FileFault{File: t.path}}
	}
	return nil
}

// applyPutAttr gives the new file the attributes asked for; what was not
// asked for is kept from the file it replaced.
func (g *Guest) applyPutAttr(t *ticket, old os.FileInfo, oldErr error) {
	if t.vm.fs.windows { // a new file: not read-only, not hidden, unless asked
		if t.attr != nil {
			_ = t.vm.fs.chattr(t.path, t.attr)
		}
		return
	}
	a := &types.GuestPosixFileAttributes{}
	if px, ok := t.attr.(*types.GuestPosixFileAttributes); ok && px != nil {
		c := *px
		a = &c
	} else if t.attr != nil {
		a.GuestFileAttributes = *t.attr.GetGuestFileAttributes()
	}
	if oldErr == nil {
		prev := posixAttr(old)
		if a.Permissions == 0 {
			a.Permissions = prev.Permissions & 0o7777
		}
		if a.OwnerId == nil {
			a.OwnerId = prev.OwnerId
		}
		if a.GroupId == nil {
			a.GroupId = prev.GroupId
		}
	}
	_ = t.vm.fs.chattr(t.path, a)
}

func dirName(n string) string {
	for i := len(n) - 1; i >= 0; i-- {
		if n[i] == '/' {
			return n[:i]
		}
	}
	return "."
}

// failingReader passes on left bytes, then fails like a dropped connection.
type failingReader struct {
	r    io.Reader
	left int64
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= int64(n)
	return n, err
}

// putFaults are PUT faults the tests queue, consumed one a PUT in order.
type putFaults struct {
	mu   sync.Mutex
	q    []putFault
	stop chan struct{} // closed when the simulator stops: stalled PUTs return
}

type putFault struct {
	status  int           // answer this status without reading the body
	resetAt int64         // drop the connection after this many body bytes; -1: no
	stall   time.Duration // take half the body, then stop reading this long
}

func (p *putFaults) add(f putFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.q = append(p.q, f)
}

func (p *putFaults) next() (putFault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.q) == 0 {
		return putFault{}, false
	}
	f := p.q[0]
	p.q = p.q[1:]
	return f, true
}

func (p *putFaults) stopped() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop == nil {
		p.stop = make(chan struct{})
	}
	return p.stop
}

// stopStalls ends stalled PUTs (the simulator is stopping).
func (g *Guest) stopStalls() {
	c := g.puts.stopped()
	g.puts.mu.Lock()
	defer g.puts.mu.Unlock()
	select {
	case <-c:
	default:
		close(c)
	}
}

// ResetNextPut makes the next PUT drop its connection after n body bytes,
// as a reset would; unlike FailNextPut the client sees no answer.
func (g *Guest) ResetNextPut(n int64) { g.puts.add(putFault{resetAt: n}) }

// FailNextPutStatus makes the next PUT answer status (e.g. 503) without
// reading its body.
func (g *Guest) FailNextPutStatus(status int) { g.puts.add(putFault{status: status, resetAt: -1}) }

// StallNextPut makes the next PUT take half its body, then stop reading for
// d (or until the simulator stops), as a host that hangs does.
func (g *Guest) StallNextPut(d time.Duration) { g.puts.add(putFault{stall: d, resetAt: -1}) }

// injectPut applies a queued fault to a PUT; it says whether the PUT is over.
func (g *Guest) injectPut(w http.ResponseWriter, r *http.Request, t *ticket, f putFault) bool {
	hangUp := func() {
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
	}
	switch {
	case f.status != 0:
		w.Header().Set("Connection", "close")
		http.Error(w, "injected fault", f.status)
	case f.resetAt >= 0:
		_, _ = io.CopyN(io.Discard, r.Body, f.resetAt)
		hangUp()
	case f.stall > 0:
		_, _ = io.CopyN(io.Discard, r.Body, t.size/2)
		select {
		case <-time.After(f.stall):
		case <-g.puts.stopped():
		case <-r.Context().Done():
		}
		hangUp()
	default:
		return false
	}
	return true
}
