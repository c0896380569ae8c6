package library

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/status"
)

// libraryConn is what the library writer needs of a connection (*Conn has
// it): API calls with deadline, re-login and error kinds, and the manager.
type libraryConn interface {
	Do(ctx context.Context, call, on string, fn func(ctx context.Context) error) error
	Library() *library.Manager
}

// LibraryWriter changes content libraries. File content goes in through
// update sessions, the only way the API offers: a commit creates a session,
// adds each file as PUSH with its checksum, PUTs the bytes, validates,
// completes and waits for DONE. Until DONE the item is unchanged for every
// other client; on any failure the session is failed (or cancelled), so the
// item stays as it was.
type LibraryWriter struct {
	c libraryConn

	// Poll is the longest pause between polls of a completing session.
	Poll time.Duration
	// Stall is the progress deadline of an upload: a PUT that has had no
	// byte taken (or no answer after its last byte) for this long fails.
	Stall time.Duration
	// PutAttempts is how many times a PUT is tried within its session
	// (resets, 502/503/504) while the bytes are at hand.
	PutAttempts int

	sha1Only atomic.Bool // the server refused SHA256: send SHA1 from now on

	mu      sync.Mutex
	unended map[string][]string // item id -> sessions a failed commit could not end
	log     *sessionLog         // records of open sessions, if tracked
}

// NewLibraryWriter makes a writer on a connection.
func NewLibraryWriter(c libraryConn) *LibraryWriter {
	w := &LibraryWriter{c: c, Poll: time.Second, Stall: 2 * time.Minute, PutAttempts: 3}
	if t, ok := c.(interface{ CallTimeout() time.Duration }); ok && t.CallTimeout() > 0 {
		w.Stall = t.CallTimeout()
	}
	return w
}

func (w *LibraryWriter) logger() *slog.Logger {
	if l, ok := w.c.(interface{ Log() *slog.Logger }); ok && l.Log() != nil {
		return l.Log()
	}
	return slog.Default()
}

// staged is a Staged file measured for the commit.
type staged struct {
	remote.Staged
	size         int64
	sha1, sha256 string
}

// measure stats and hashes a staged file in one read (SHA256 for the API
// versions that take it, SHA1 for the ones that do not). A SHA256 given by
// the stager is taken as is; SHA1 is then computed only if the server needs it.
func measure(f remote.Staged) (staged, error) {
	if f.SHA256 != "" {
		return staged{Staged: f, size: f.Size, sha256: f.SHA256}, nil
	}
	r, err := os.Open(f.Path)
	if err != nil {
		return staged{}, err
	}
	defer r.Close()
	h1, h256 := sha1.New(), sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(h1, h256), r, make([]byte, 1<<20))
	if err != nil {
		return staged{}, err
	}
	return staged{Staged: f, size: n, sha1: backend.HexSum(h1), sha256: backend.HexSum(h256)}, nil
}

// Commit applies files (added or replaced) and removals to an item in one
// update session, so that they land together or not at all (an OVF template
// is validated as a whole). It returns once the session is DONE. Errors are
// *Error naming the step and the server's fault.
func (w *LibraryWriter) Commit(ctx context.Context, itemID string, files []remote.Staged, remove []string) error {
	var ms []staged
	for _, f := range files {
		m, err := measure(f)
		if err != nil {
			return backend.NewError("stage "+f.Name, itemID, remote.ErrIO, err)
		}
		ms = append(ms, m)
	}
	w.endUnended(ctx, itemID) // a session an earlier failure left would make this one busy
	// Listed in status from the session's create to DONE.
	defer w.step(ctx, itemID, ms).End()
	lm := w.c.Library()
	var sid string
	err := w.c.Do(ctx, "updatesession:create", itemID, func(ctx context.Context) (err error) {
		sid, err = lm.CreateLibraryItemUpdateSession(ctx, library.Session{LibraryItemID: itemID})
		return err
	})
	if err != nil {
		return err
	}
	w.opened(sid, itemID)
	stop := make(chan struct{})
	var keeper sync.WaitGroup
	keeper.Add(1)
	go w.keepAlive(sid, itemID, stop, &keeper)
	ended, err := w.run(ctx, sid, itemID, ms, remove)
	close(stop)
	keeper.Wait()
	if err != nil && !ended {
		w.abandon(ctx, sid, itemID)
	} else {
		w.closed(sid)
	}
	return err
}

// step lists the commit with the transfers in flight, for the mount path
// ctx carries (the item's folder; the file's own path when it commits one).
func (w *LibraryWriter) step(ctx context.Context, itemID string, files []staged) *status.Live {
	c, ok := w.c.(interface {
		Step(ctx context.Context, kind, on, state string) *status.Live
	})
	if !ok {
		return nil
	}
	if o := status.Origin(ctx); o != "" && len(files) == 1 {
		ctx = status.WithOrigin(ctx, o+"/"+files[0].Name)
	}
	return c.Step(ctx, "library commit", itemID, "committing")
}

// run does the steps after create; ended says the session already left ACTIVE.
func (w *LibraryWriter) run(ctx context.Context, sid, itemID string, files []staged, remove []string) (ended bool, err error) {
	lm := w.c.Library()
	for _, f := range files {
		if err := w.upload(ctx, sid, itemID, f); err != nil {
			return false, err
		}
	}
	for _, name := range remove {
		err := w.c.Do(ctx, "updatesession/file:remove", itemID+"/"+name, func(ctx context.Context) error {
			return lm.RemoveLibraryItemUpdateSessionFile(ctx, sid, name)
		})
		if err != nil {
			return false, err
		}
	}
	var v *library.UpdateFileValidation
	err = w.c.Do(ctx, "updatesession/file:validate", itemID, func(ctx context.Context) (err error) {
		v, err = lm.ValidateLibraryItemUpdateSessionFile(ctx, sid)
		return err
	})
	if err != nil {
		return false, err
	}
	if v.HasErrors {
		return false, remote.Errorf("updatesession/file:validate", itemID, remote.ErrIO, "%s", validationText(v))
	}
	err = w.c.Do(ctx, "updatesession:complete", itemID, func(ctx context.Context) error {
		return lm.CompleteLibraryItemUpdateSession(ctx, sid)
	})
	if err != nil {
		return false, err
	}
	return w.wait(ctx, sid, itemID)
}

func validationText(v *library.UpdateFileValidation) string {
	var parts []string
	if len(v.MissingFiles) > 0 {
		parts = append(parts, "missing files: "+strings.Join(v.MissingFiles, ", "))
	}
	for _, f := range v.InvalidFiles {
		parts = append(parts, "invalid file "+f.Name+": "+f.ErrorMessage.DefaultMessage)
	}
	if len(parts) == 0 {
		return "validation failed"
	}
	return strings.Join(parts, "; ")
}

// upload adds one file as PUSH with its checksum and PUTs its bytes.
func (w *LibraryWriter) upload(ctx context.Context, sid, itemID string, f staged) error {
	if o := status.Origin(ctx); o != "" { // the item's folder: its PUT is for the file
		ctx = status.WithOrigin(ctx, o+"/"+f.Name)
	}
	lm := w.c.Library()
	on := itemID + "/" + f.Name
	var info *library.UpdateFile
	add := func(alg, sum string) error {
		return w.c.Do(ctx, "updatesession/file:add", on, func(ctx context.Context) (err error) {
			info, err = lm.AddLibraryItemFile(ctx, sid, library.UpdateFile{
				Name: f.Name, SourceType: "PUSH", Size: f.size,
				Checksum: &library.Checksum{Algorithm: alg, Checksum: sum},
			})
			return err
		})
	}
	sha1sum := func() (string, error) {
		if f.sha1 != "" {
			return f.sha1, nil
		}
		m, err := measure(remote.Staged{Name: f.Name, Path: f.Path})
		if err != nil {
			return "", backend.NewError("stage "+f.Name, itemID, remote.ErrIO, err)
		}
		if m.size != f.size {
			return "", remote.Errorf("stage "+f.Name, itemID, remote.ErrIO, "staged file changed size while committed")
		}
		return m.sha1, nil
	}
	var err error
	if w.sha1Only.Load() {
		var sum string
		if sum, err = sha1sum(); err == nil {
			err = add("SHA1", sum)
		}
	} else if err = add("SHA256", f.sha256); errors.Is(err, remote.ErrInvalid) {
		// Perhaps a server from before SHA256 (the API then named SHA1 and
		// MD5 only): if SHA1 is taken where SHA256 was not, keep to SHA1.
		var sum string
		if sum, err = sha1sum(); err == nil {
			if err = add("SHA1", sum); err == nil {
				w.sha1Only.Store(true)
			}
		}
	}
	if err != nil {
		return err
	}
	if info.UploadEndpoint == nil || info.UploadEndpoint.URI == "" {
		return remote.Errorf("updatesession/file:add", on, remote.ErrIO, "no upload endpoint for a PUSH file")
	}
	u, err := soap.ParseURL(info.UploadEndpoint.URI)
	if err != nil {
		return backend.NewError("updatesession/file:add", on, remote.ErrIO, err)
	}
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := w.put(ctx, lm, u, on, itemID, f)
		if err == nil {
			return nil
		}
		if attempt >= max(w.PutAttempts, 1) || !backend.PutRetryable(ctx, err) {
			// The PUT's answer has only a status: the file's state says why.
			if fi := w.fileState(ctx, sid, on, f.Name); ctx.Err() == nil && fi != nil && fi.ErrorMessage != nil {
				err.Fault += " (" + fi.Status + ": " + fi.ErrorMessage.DefaultMessage + ")"
			}
			if attempt > 1 {
				err.Fault += fmt.Sprintf(" (after %d attempts)", attempt)
			}
			return err
		}
		w.logger().Warn("PUT failed, retrying", "on", on, "call", "PUT", "fault", err.Fault, "attempt", attempt)
		select {
		case <-ctx.Done():
			return backend.NewError("PUT", on, remote.ErrIO, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// put is one PUT of a staged file's bytes, under the progress deadline.
func (w *LibraryWriter) put(ctx context.Context, lm *library.Manager, u *url.URL, on, itemID string, f staged) *remote.Error {
	r, err := os.Open(f.Path)
	if err != nil {
		return backend.NewError("stage "+f.Name, itemID, remote.ErrIO, err)
	}
	defer r.Close()
	p := soap.DefaultUpload
	p.ContentLength = f.size
	p.Headers = map[string]string{"vmware-api-session-id": lm.SessionID()}
	// No deadline for the whole: a large file takes as long as it takes;
	// but one that makes no progress for Stall fails.
	g := backend.NewStallGuard(ctx, w.Stall, "PUT", on)
	defer g.Stop()
	// (as measured, even if the file grows; the transport's Close of the
	// body must not stop the guard: the answer is still to come)
	ub := backend.NewUploadBody(g.Wrap(io.NopCloser(io.LimitReader(r, f.size))))
	defer ub.End()
	var body io.Reader = ub
	if f.size == 0 {
		body = http.NoBody // a zero length with a body would be sent chunked
	}
	if err := lm.Upload(g.Context(), body, u, &p); err != nil {
		if ctx.Err() != nil {
			return backend.NewError("PUT", on, remote.ErrIO, ctx.Err())
		}
		var be *remote.Error
		if errors.As(g.Err(err), &be) {
			return be
		}
		return backend.NewError("PUT", on, remote.ErrIO, err)
	}
	return nil
}

// fileState asks for a file's state in a session, or returns nil.
func (w *LibraryWriter) fileState(ctx context.Context, sid, on, name string) *library.UpdateFile {
	if ctx.Err() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, min(w.Stall, 30*time.Second))
	defer cancel()
	var fi *library.UpdateFile
	_ = w.c.Do(ctx, "updatesession/file:get", on, func(ctx context.Context) (err error) {
		fi, err = w.c.Library().GetLibraryItemUpdateSessionFile(ctx, sid, name)
		return err
	})
	return fi
}

// wait polls the session until it leaves ACTIVE; DONE is success.
func (w *LibraryWriter) wait(ctx context.Context, sid, itemID string) (ended bool, err error) {
	lm := w.c.Library()
	pause := 20 * time.Millisecond
	for {
		var s *library.Session
		err := w.c.Do(ctx, "updatesession:get", itemID, func(ctx context.Context) (err error) {
			s, err = lm.GetLibraryItemUpdateSession(ctx, sid)
			return err
		})
		if err != nil {
			return false, err
		}
		switch s.State {
		case "DONE":
			return true, nil
		case "ACTIVE":
		default:
			msg := s.State
			if s.ErrorMessage != nil {
				msg += ": " + s.ErrorMessage.DefaultMessage
			}
			return true, remote.Errorf("updatesession:complete", itemID, remote.ErrIO, "session ended %s", msg)
		}
		select {
		case <-ctx.Done():
			return false, backend.NewError("updatesession:get", itemID, remote.ErrIO, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, w.Poll)
	}
}

// RemoveFile removes one file from an item (an update session with a remove).
func (w *LibraryWriter) RemoveFile(ctx context.Context, itemID, name string) error {
	return w.Commit(ctx, itemID, nil, []string{name})
}
