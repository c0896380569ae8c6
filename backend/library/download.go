package library

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// Downloads keeps one download session per library item, reused across its
// files and across opens, kept alive while in use and deleted when idle.
type Downloads struct {
	c    *backend.Conn
	idle time.Duration

	mu       sync.Mutex
	sessions map[string]*dlSession // by item id + content version
	closed   bool                  // Close has begun: deletes run in its goroutine

	stop chan struct{}
	wg   sync.WaitGroup // the keeper and background deletes; Close waits for them
}

type dlSession struct {
	id      string
	item    string
	users   int
	lastUse time.Time

	mu        sync.Mutex // serialises prepares
	endpoints map[string]*url.URL
}

// NewDownloads starts the session keeper; sessions unused for idle are deleted.
func NewDownloads(c *backend.Conn, idle time.Duration) *Downloads {
	if idle <= 0 {
		idle = time.Minute
	}
	d := &Downloads{c: c, idle: idle, sessions: map[string]*dlSession{}, stop: make(chan struct{})}
	d.wg.Add(1)
	go d.keeper()
	return d
}

// Source is the cache.Source of one library file.
func (d *Downloads) Source(item remote.Item, f remote.File) *LibrarySource {
	return &LibrarySource{d: d, item: item, file: f}
}

// LibrarySource reads one file of one item version.
type LibrarySource struct {
	d    *Downloads
	item remote.Item
	file remote.File
	// Origin is the file's path in the mount, shown by `vspherefs status`
	// for its prepare and transfers (the cache opens streams on contexts of
	// its own): set by whoever makes the source.
	Origin string
}

// ID keys cached blocks: a new content version is a new object.
func (s *LibrarySource) ID() string {
	return fmt.Sprintf("library:%s@%s/%s#%d", s.item.ID, s.item.ContentVersion, s.file.Name, s.file.Size)
}

// Size is the file's size as listed.
func (s *LibrarySource) Size() int64 { return s.file.Size }

// Open GETs the download endpoint from off (n bytes, or to the end if n < 0).
// Within the one deadline it retries what is safe: a 503, a reset or
// refused connection (backoff and jitter), and an expired session or
// endpoint (a new session, once).
func (s *LibrarySource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	ctx = backend.WithOrigin(ctx, s.Origin)
	deadline := time.Now().Add(s.d.c.Config.Timeout)
	renewed := false
	for attempt := 0; ; attempt++ {
		body, ranged, renew, err := s.open(ctx, off, n)
		if err == nil {
			return body, ranged, nil
		}
		if renew && !renewed {
			renewed = true
			continue
		}
		if ctx.Err() != nil || !backend.Transient(err) {
			return nil, false, err
		}
		wait := backend.Backoff(attempt)
		if time.Until(deadline) < wait {
			return nil, false, err
		}
		if backend.SleepCtx(ctx, wait) != nil {
			return nil, false, ctx.Err()
		}
	}
}

func (s *LibrarySource) open(ctx context.Context, off, n int64) (io.ReadCloser, bool, bool, error) {
	d := s.d
	sess, err := d.acquire(ctx, s.item)
	if err != nil {
		return nil, false, false, err
	}
	u, err := d.endpoint(ctx, sess, s.item, s.file.Name)
	if err != nil {
		d.release(sess)
		return nil, false, false, err
	}
	on := s.item.Name + "/" + s.file.Name
	guard := backend.NewStallGuard(ctx, d.c.Config.Timeout, "GET download endpoint", on)
	req, err := http.NewRequestWithContext(guard.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		guard.Stop()
		d.release(sess)
		return nil, false, false, err
	}
	req.Header.Set("vmware-api-session-id", d.c.REST().SessionID())
	// A Range even from byte 0 to the end (a 206 tells the cache the
	// endpoint takes Range, so reads far ahead of a stream need not wait
	// for it), but not of an empty file: no range of it is satisfiable.
	switch {
	case n >= 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	case off > 0 || s.file.Size > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	start := time.Now()
	res, err := d.c.HTTP().Do(req)
	if d.c.Config.Debug {
		d.c.Config.Log.Debug("api", "call", "GET download", "on", on, "range", req.Header.Get("Range"), "took", time.Since(start).Round(time.Microsecond), "err", backend.ErrText(err))
	}
	if err != nil {
		guard.Stop()
		d.release(sess)
		if ctx.Err() != nil {
			return nil, false, false, ctx.Err()
		}
		return nil, false, false, backend.TransportError("GET download endpoint", on, guard.Err(err))
	}
	switch res.StatusCode {
	case http.StatusOK, http.StatusPartialContent:
		body := &backend.TransportBody{ReadCloser: guard.Wrap(res.Body), Call: "GET download endpoint", On: on}
		return &sessionBody{ReadCloser: body, release: func() { d.release(sess) }}, res.StatusCode == http.StatusPartialContent, false, nil
	}
	res.Body.Close()
	guard.Stop()
	d.release(sess)
	e := &remote.Error{Call: "GET download endpoint", On: on, Kind: remote.ErrIO, Fault: res.Status, Err: &backend.HTTPStatus{Code: res.StatusCode, Status: res.Status}}
	switch res.StatusCode {
	case http.StatusNotFound, http.StatusUnauthorized, http.StatusGone, http.StatusForbidden:
		// The session or its endpoint expired: start a new one once.
		d.drop(ctx, s.item)
		return nil, false, true, e
	case http.StatusRequestedRangeNotSatisfiable:
		e.Kind = remote.ErrStale
	}
	return nil, false, false, e
}

type sessionBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *sessionBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

func sessionKey(it remote.Item) string { return it.ID + "@" + it.ContentVersion }

// acquire returns the item's session, creating it if needed, and counts a user.
func (d *Downloads) acquire(ctx context.Context, it remote.Item) (*dlSession, error) {
	key := sessionKey(it)
	d.mu.Lock()
	if s, ok := d.sessions[key]; ok {
		s.users++
		s.lastUse = time.Now()
		d.mu.Unlock()
		return s, nil
	}
	d.mu.Unlock()
	var id string
	err := d.c.Do(ctx, "download-session:create", it.Name, func(ctx context.Context) (err error) {
		id, err = d.c.Library().CreateLibraryItemDownloadSession(ctx, library.Session{LibraryItemID: it.ID})
		return err
	})
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.sessions[key]; ok { // another reader won the race
		d.deleteLaterLocked(id)
		s.users++
		s.lastUse = time.Now()
		return s, nil
	}
	s := &dlSession{id: id, item: it.Name, users: 1, lastUse: time.Now(), endpoints: map[string]*url.URL{}}
	d.sessions[key] = s
	return s, nil
}

func (d *Downloads) release(s *dlSession) {
	d.mu.Lock()
	s.users--
	s.lastUse = time.Now()
	d.mu.Unlock()
}

// drop forgets an item's session (expired or failed) so the next open makes a new one.
func (d *Downloads) drop(ctx context.Context, it remote.Item) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[sessionKey(it)]
	delete(d.sessions, sessionKey(it))
	if s != nil {
		d.deleteLaterLocked(s.id)
	}
}

// deleteLaterLocked deletes a session in the background (the caller goes on
// reading), tracked so that Close waits for it; after Close has begun the
// session is left to Close's own deletes. Each delete is one call bounded by
// --timeout (Conn.Do). Call with d.mu held.
func (d *Downloads) deleteLaterLocked(id string) {
	if d.closed {
		d.sessions["closing:"+id] = &dlSession{id: id} // Close deletes it
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.delete(id)
	}()
}

// endpoint prepares a file and polls until it is PREPARED.
func (d *Downloads) endpoint(ctx context.Context, s *dlSession, it remote.Item, name string) (*url.URL, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.endpoints[name]; ok {
		return u, nil
	}
	on := it.Name + "/" + name
	step := d.c.Step(ctx, "library prepare", on, "preparing")
	defer step.End() // (a prepared file's endpoint is kept: listed once)
	lm := d.c.Library()
	var info *library.DownloadFile
	err := d.c.Do(ctx, "downloadsession/file:prepare", on, func(ctx context.Context) (err error) {
		info, err = lm.PrepareLibraryItemDownloadSessionFile(ctx, s.id, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	wait := 5 * time.Millisecond // small files are prepared at once: poll fast first, then back off
	for info.Status != "PREPARED" {
		switch info.Status {
		case "ERROR":
			msg := "prepare failed"
			if info.ErrorMessage != nil {
				msg = info.ErrorMessage.DefaultMessage
			}
			return nil, remote.Errorf("downloadsession/file:prepare", on, remote.ErrIO, "ERROR: %s", msg)
		case "UNPREPARED", "PREPARE_REQUESTED", "PREPARING":
		default:
			return nil, remote.Errorf("downloadsession/file:get", on, remote.ErrIO, "unexpected status %q", info.Status)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if wait < time.Second {
			wait *= 2
		}
		err = d.c.Do(ctx, "downloadsession/file:get", on, func(ctx context.Context) (err error) {
			info, err = lm.GetLibraryItemDownloadSessionFile(ctx, s.id, name)
			if m, ok := err.(*rest.LocalizableMessage); ok {
				// govmomi returns an ERROR status as its message: keep it as a status.
				info, err = &library.DownloadFile{Status: "ERROR", ErrorMessage: m}, nil
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if info.DownloadEndpoint == nil {
		return nil, remote.Errorf("downloadsession/file:get", on, remote.ErrIO, "PREPARED without a download endpoint")
	}
	u, err := soap.ParseURL(info.DownloadEndpoint.URI)
	if err != nil {
		return nil, remote.Errorf("downloadsession/file:get", on, remote.ErrIO, "bad endpoint: %v", err)
	}
	if tp := info.DownloadEndpoint.SSLCertificateThumbprint; tp != "" {
		d.c.SOAP.SetThumbprint(u.Host, tp)
	}
	s.endpoints[name] = u
	return u, nil
}

// keeper keeps sessions in use alive and deletes idle ones.
func (d *Downloads) keeper() {
	defer d.wg.Done()
	t := time.NewTicker(d.idle / 2)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		var alive, idle []*dlSession
		d.mu.Lock()
		for k, s := range d.sessions {
			switch {
			case s.users > 0:
				alive = append(alive, s)
			case time.Since(s.lastUse) > d.idle:
				idle = append(idle, s)
				delete(d.sessions, k)
			}
		}
		d.mu.Unlock()
		for _, s := range alive {
			_ = d.c.Do(context.Background(), "download-session:keep-alive", s.item, func(ctx context.Context) error {
				return d.c.Library().KeepAliveLibraryItemDownloadSession(ctx, s.id)
			})
		}
		for _, s := range idle {
			d.delete(s.id)
		}
	}
}

func (d *Downloads) delete(id string) {
	err := d.c.Do(context.Background(), "download-session:delete", id, func(ctx context.Context) error {
		return d.c.Library().DeleteLibraryItemDownloadSession(ctx, id)
	})
	if err != nil {
		d.c.Config.Log.Warn("could not delete download session", "session", id, "err", err)
	}
}

// Close deletes every session: none may remain after unmount.
func (d *Downloads) Close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	close(d.stop)
	d.wg.Wait()
	for { // until no open still running made one
		d.mu.Lock()
		sessions := d.sessions
		d.sessions = map[string]*dlSession{}
		d.mu.Unlock()
		if len(sessions) == 0 {
			return
		}
		for _, s := range sessions {
			d.delete(s.id)
		}
	}
}

// Transient tells the cache that a lost stream of this file may be resumed.
func (s *LibrarySource) Transient(err error) bool { return backend.Transient(err) }
