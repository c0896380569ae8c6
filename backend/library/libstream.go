package library

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// Stream is an update session whose first file is uploaded while it is
// being written: the file is added as PUSH without size or checksum (both
// optional in the API), and one PUT, its body chunked, reads the bytes from
// the caller's body as they come. The bytes are verified by their count
// (the server's received size against what the body gave); a checksum
// given up front, which lets the server check the bytes itself, is what
// the staged path (Commit) sends instead.
type Stream struct {
	w            *LibraryWriter
	itemID, name string
	sid, on      string
	done         chan struct{} // closed when the PUT has ended
	putErr       error         // the PUT's outcome, once done
	n            atomic.Int64  // bytes the PUT took from the body
	idle         time.Duration // the PUT took no byte (or gave no answer) for this long: it failed
	ctx          context.Context
	cancel       context.CancelCauseFunc // ends the PUT
	lastRead     atomic.Int64            // unix nanos of the PUT's last read of the body
	inRead       atomic.Bool             // the PUT waits in the body's Read: for the writer, not the server
}

// streamBody is the PUT's body: it notes each read, for the stall check.
type streamBody struct {
	r io.Reader
	s *Stream
}

func (b streamBody) Read(p []byte) (int, error) {
	b.s.inRead.Store(true)
	n, err := b.r.Read(p)
	b.s.n.Add(int64(n))
	b.s.lastRead.Store(time.Now().UnixNano())
	b.s.inRead.Store(false)
	return n, err
}

// WriteTo lets a body that writes itself (fs's ring) hand the transport
// its bytes without a copy; writes note progress as reads do, and the time
// between them, while the body waits for its writer, is no stall.
func (b streamBody) WriteTo(w io.Writer) (int64, error) {
	wt, ok := b.r.(io.WriterTo)
	if !ok {
		return io.Copy(w, struct{ io.Reader }{b})
	}
	b.s.inRead.Store(true)
	n, err := wt.WriteTo(progressWriter{w, b.s})
	b.s.lastRead.Store(time.Now().UnixNano()) // the wait for the answer starts now
	b.s.inRead.Store(false)
	return n, err
}

// progressWriter is the transport as a self-writing body sees it.
type progressWriter struct {
	w io.Writer
	s *Stream
}

func (p progressWriter) Write(b []byte) (int, error) {
	p.s.lastRead.Store(time.Now().UnixNano())
	p.s.inRead.Store(false)
	n, err := p.w.Write(b)
	p.s.n.Add(int64(n))
	p.s.lastRead.Store(time.Now().UnixNano())
	p.s.inRead.Store(true) // back to waiting for the writer, until the next Write
	return n, err
}

// StartStream creates the session and adds name; one PUT then reads body
// until it gives io.EOF (the file's end: Finish commits it) or an error
// (the upload fails: Abort ends the session). The PUT runs on ctx.
func (w *LibraryWriter) StartStream(ctx context.Context, itemID, name string, body io.Reader) (*Stream, error) {
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
	s := &Stream{w: w, itemID: itemID, name: name, sid: sid, on: on, done: make(chan struct{}), idle: 2 * time.Minute}
	if c, ok := w.c.(*backend.Conn); ok && c.Config.Timeout > 0 {
		s.idle = c.Config.Timeout
	}
	s.lastRead.Store(time.Now().UnixNano())
	ctx, s.cancel = context.WithCancelCause(ctx)
	s.ctx = ctx
	go s.watch()
	go func() {
		p := soap.DefaultUpload
		p.ContentLength = -1 // chunked: the size is known at the end
		p.Headers = map[string]string{"vmware-api-session-id": lm.SessionID()}
		err := lm.Upload(ctx, streamBody{body, s}, pu, &p)
		if err != nil && s.stalled() {
			err = s.stallErr()
		} else if err != nil && ctx.Err() != nil && context.Cause(ctx) != ctx.Err() {
			// Cancelled by the caller with a reason (an unmount that gave up): say it.
			err = remote.Errorf("PUT", on, remote.ErrIO, "%v", context.Cause(ctx))
		} else if err != nil {
			var e *remote.Error
			if !errors.As(err, &e) {
				err = backend.NewError("PUT", on, remote.ErrIO, err)
			}
		}
		s.putErr = err
		close(s.done)
	}()
	return s, nil
}

// Done is closed when the PUT has ended; Err is then its outcome.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err is the PUT's failure, once Done is closed.
func (s *Stream) Err() error { return s.putErr }

// watch ends the PUT when it has taken no byte of the body for s.idle
// while not waiting in the body's Read: the server stopped reading (or,
// after the last byte, stopped answering). A wait in Read is the writer's,
// and no stall.
func (s *Stream) watch() {
	t := time.NewTimer(s.idle)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			since := time.Since(time.Unix(0, s.lastRead.Load()))
			if s.inRead.Load() {
				since = 0
			}
			if since >= s.idle {
				s.cancel(backend.ErrStalled)
				return
			}
			t.Reset(s.idle - since)
		}
	}
}

// stalled says whether the PUT was ended for taking no byte for s.idle.
func (s *Stream) stalled() bool { return errors.Is(context.Cause(s.ctx), backend.ErrStalled) }

// stallErr is the failure of a stalled PUT, worded as a staged PUT's stall.
func (s *Stream) stallErr() *remote.Error {
	return &remote.Error{Call: "PUT", On: s.on, Kind: remote.ErrIO, Err: backend.ErrStalled, Fault: fmt.Sprintf("%v for %s (--timeout)", backend.ErrStalled, s.idle)}
}

// Finish ends the PUT, checks what the server received, removes the given
// files in the same session, and completes it. It returns once the session
// is DONE; on failure the session is failed (or cancelled).
func (s *Stream) Finish(ctx context.Context, remove []string) error {
	w := s.w
	<-s.done
	s.cancel(nil)
	if err := s.putErr; err != nil {
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
		n := s.n.Load()
		if fi.Size > 0 && fi.Size != n || fi.Size == 0 && fi.BytesTransferred > 0 && fi.BytesTransferred != n {
			w.abandon(ctx, s.sid, s.itemID)
			return remote.Errorf("updatesession/file:get", s.on, remote.ErrIO, "the server received %d bytes of %d", max(fi.Size, fi.BytesTransferred), n)
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
	s.cancel(io.ErrUnexpectedEOF)
	<-s.done
	s.w.abandon(ctx, s.sid, s.itemID)
}
