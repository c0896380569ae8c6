package library

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// Stream is an update session whose first file is uploaded while it is
// being written: the file is added as PUSH without size or checksum (both
// optional in the API), and one PUT, its body chunked, carries the bytes as
// Write gives them. The bytes are verified by their count (and by the
// server's checksum of them where it reports one, against the SHA-256
// computed on the way); a checksum given up front, which lets the server
// check the bytes itself, is what the staged path (Commit) sends instead.
type Stream struct {
	w            *LibraryWriter
	itemID, name string
	sid, on      string
	pw           *io.PipeWriter
	put          chan error
	once         sync.Once
	putErr       error
	n            int64
	sum          hash.Hash
	idle         time.Duration           // no byte taken for this long while some wait: the PUT failed
	ctx          context.Context         // the PUT's: its cause says whether it stalled
	cancel       context.CancelCauseFunc // ends the PUT
	lastRead     atomic.Int64            // unix nanos of the PUT's last read of the body
}

// streamBody is the PUT's body: it notes each read, for the stall check.
type streamBody struct {
	r *io.PipeReader
	s *Stream
}

func (b streamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.s.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

// StartStream creates the session and adds name; the PUT runs on ctx until
// Finish or Abort.
func (w *LibraryWriter) StartStream(ctx context.Context, itemID, name string) (*Stream, error) {
	lm := w.c.Library()
	var sid string
	err := w.c.Do(ctx, "updatesession:create", itemID, func(ctx context.Context) (err error) {
		sid, err = lm.CreateLibraryItemUpdateSession(ctx, library.Session{LibraryItemID: itemID})
		return err
	})
	if err != nil {
		return nil, err
	}
	on := itemID + "/" + name
	var info *library.UpdateFile
	err = w.c.Do(ctx, "updatesession/file:add", on, func(ctx context.Context) (err error) {
		info, err = lm.AddLibraryItemFile(ctx, sid, library.UpdateFile{Name: name, SourceType: "PUSH"})
		return err
	})
	if err == nil && (info.UploadEndpoint == nil || info.UploadEndpoint.URI == "") {
		err = remote.Errorf("updatesession/file:add", on, remote.ErrIO, "no upload endpoint for a PUSH file")
	}
	var pu *url.URL
	if err == nil {
		var perr error
		if pu, perr = soap.ParseURL(info.UploadEndpoint.URI); perr != nil {
			err = backend.NewError("updatesession/file:add", on, remote.ErrIO, perr)
		}
	}
	if err != nil {
		w.abandon(ctx, sid, itemID)
		return nil, err
	}
	pr, pw := io.Pipe()
	s := &Stream{w: w, itemID: itemID, name: name, sid: sid, on: on, pw: pw, put: make(chan error, 1), sum: sha256.New(), idle: 2 * time.Minute}
	if c, ok := w.c.(*backend.Conn); ok && c.Config.Timeout > 0 {
		s.idle = c.Config.Timeout
	}
	s.lastRead.Store(time.Now().UnixNano())
	ctx, s.cancel = context.WithCancelCause(ctx)
	s.ctx = ctx
	go func() {
		p := soap.DefaultUpload
		p.ContentLength = -1 // chunked: the size is known at the end
		p.Headers = map[string]string{"vmware-api-session-id": lm.SessionID()}
		err := lm.Upload(ctx, streamBody{pr, s}, pu, &p)
		if err != nil && s.stalled() {
			err = s.stallErr()
		} else if err != nil && ctx.Err() != nil && context.Cause(ctx) != ctx.Err() {
			// Cancelled by the caller with a reason (an unmount that gave up): say it.
			err = remote.Errorf("PUT", on, remote.ErrIO, "%v", context.Cause(ctx))
		}
		if err == nil {
			pr.CloseWithError(io.ErrClosedPipe) // the server answered before the end: later writes fail
		} else {
			pr.CloseWithError(err)
		}
		s.put <- err
	}()
	return s, nil
}

// Write sends bytes; it returns once the PUT has taken them, or fails if
// the PUT takes none for the --timeout.
func (s *Stream) Write(p []byte) (int, error) {
	stop := s.watch()
	n, err := s.pw.Write(p)
	stop()
	s.sum.Write(p[:n])
	s.n += int64(n)
	if err != nil {
		if s.stalled() {
			return n, s.stallErr()
		}
		if s.ctx.Err() != nil && context.Cause(s.ctx) != s.ctx.Err() {
			return n, remote.Errorf("PUT", s.on, remote.ErrIO, "%v", context.Cause(s.ctx))
		}
		return n, backend.NewError("PUT", s.on, remote.ErrIO, err)
	}
	return n, nil
}

// stalled says whether the PUT was ended for taking no byte for s.idle.
func (s *Stream) stalled() bool { return errors.Is(context.Cause(s.ctx), backend.ErrStalled) }

// stallErr is the failure of a stalled PUT, worded as a staged PUT's stall.
func (s *Stream) stallErr() *remote.Error {
	return &remote.Error{Call: "PUT", On: s.on, Kind: remote.ErrIO, Err: backend.ErrStalled, Fault: fmt.Sprintf("%v for %s (--timeout)", backend.ErrStalled, s.idle)}
}

// Sent is the number of bytes the PUT has taken.
func (s *Stream) Sent() int64 { return s.n }

// watch ends the PUT if it reads nothing for s.idle until the returned
// function is called.
func (s *Stream) watch() func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTimer(s.idle)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				since := time.Since(time.Unix(0, s.lastRead.Load()))
				if since >= s.idle {
					s.cancel(backend.ErrStalled)
					s.pw.CloseWithError(backend.ErrStalled)
					return
				}
				t.Reset(s.idle - since)
			}
		}
	}()
	return func() { close(done) }
}

func (s *Stream) endPut() error {
	s.once.Do(func() {
		s.lastRead.Store(time.Now().UnixNano()) // the wait for the server's answer starts now
		stop := s.watch()
		s.pw.Close()
		s.putErr = <-s.put
		stop()
		s.cancel(nil)
	})
	return s.putErr
}

// Finish ends the PUT, checks what the server received, removes the given
// files in the same session, and completes it. It returns once the session
// is DONE; on failure the session is failed (or cancelled).
func (s *Stream) Finish(ctx context.Context, remove []string) error {
	w := s.w
	if err := s.endPut(); err != nil {
		var e *remote.Error
		if !errors.As(err, &e) {
			e = backend.NewError("PUT", s.on, remote.ErrIO, err)
		}
		if fi := w.fileState(ctx, s.sid, s.on, s.name); fi != nil && fi.ErrorMessage != nil {
			e.Fault += " (" + fi.Status + ": " + fi.ErrorMessage.DefaultMessage + ")"
		}
		w.abandon(ctx, s.sid, s.itemID)
		return e
	}
	if fi := w.fileState(ctx, s.sid, s.on, s.name); fi != nil {
		if fi.Size > 0 && fi.Size != s.n || fi.Size == 0 && fi.BytesTransferred > 0 && fi.BytesTransferred != s.n {
			w.abandon(ctx, s.sid, s.itemID)
			return remote.Errorf("updatesession/file:get", s.on, remote.ErrIO, "the server received %d bytes of %d", max(fi.Size, fi.BytesTransferred), s.n)
		}
		if c := fi.Checksum; c != nil && c.Checksum != "" && strings.EqualFold(c.Algorithm, "SHA256") && !strings.EqualFold(c.Checksum, backend.HexSum(s.sum)) {
			w.abandon(ctx, s.sid, s.itemID)
			return remote.Errorf("updatesession/file:get", s.on, remote.ErrIO, "the server's SHA256 of the bytes is %s, sent %s", c.Checksum, backend.HexSum(s.sum))
		}
	}
	ended, err := w.run(ctx, s.sid, s.itemID, nil, remove)
	if err != nil && !ended {
		w.abandon(ctx, s.sid, s.itemID)
	}
	return err
}

// Abort ends the PUT and fails the session: nothing of it reaches the item.
func (s *Stream) Abort(ctx context.Context) {
	s.pw.CloseWithError(io.ErrUnexpectedEOF)
	s.cancel(io.ErrUnexpectedEOF)
	s.once.Do(func() { s.putErr = <-s.put })
	s.w.abandon(ctx, s.sid, s.itemID)
}

// SHA256 is the hex SHA-256 of the bytes sent so far.
func (s *Stream) SHA256() string { return backend.HexSum(s.sum) }
