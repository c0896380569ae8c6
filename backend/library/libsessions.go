package library

// Update sessions are never left ACTIVE: a failed commit fails (or cancels)
// its session with retries, remembers one it could not end so that the next
// commit of that item ends it first, and records every open session in the
// cache dir so that the next mount with that cache dir ends the sessions of a
// mount that was killed. While a commit runs its session is kept alive.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/vapi/library"

	"github.com/vspherefs/vspherefs/remote"
)

// sessionLog records the update sessions this mount has open, one file a
// session (named by its id, holding its item id), in the folder the cache
// dir's owner (cmd/vspherefs/cachedir.go) gives this mount and keeps locked
// while it runs.
type sessionLog struct {
	dir string
}

// TrackSessions records this writer's open update sessions in dir. Records
// already there were taken over from mounts that died (the cache dir's
// owner moves them in): their sessions are ended first. Close stops it.
func (w *LibraryWriter) TrackSessions(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	w.endLeft(ctx, dir)
	w.mu.Lock()
	w.log = &sessionLog{dir: dir}
	w.mu.Unlock()
	return nil
}

// endLeft ends the sessions recorded in dir by mounts that died; a record
// whose session could not be ended stays, and the item's next commit ends
// it first.
func (w *LibraryWriter) endLeft(ctx context.Context, dir string) {
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		p := filepath.Join(dir, f.Name())
		item, _ := os.ReadFile(p)
		sid, itemID := f.Name(), strings.TrimSpace(string(item))
		if w.end(ctx, sid, itemID, true) {
			w.logger().Warn("cancelled an update session a previous mount left open", "session", sid, "item", itemID)
			os.Remove(p)
		} else {
			w.remember(itemID, sid)
		}
	}
}

// Close stops recording (the records of sessions still open stay for the
// next mount; the folder is the cache dir owner's to remove).
func (w *LibraryWriter) Close() {
	w.mu.Lock()
	w.log = nil
	w.mu.Unlock()
}

// opened records a new session (best effort: a record it cannot write is
// only a session the next mount will not clean up).
func (w *LibraryWriter) opened(sid, itemID string) {
	w.mu.Lock()
	l := w.log
	w.mu.Unlock()
	if l != nil {
		_ = os.WriteFile(filepath.Join(l.dir, sid), []byte(itemID+"\n"), 0o600)
	}
}

// closed drops the record of a session that has ended.
func (w *LibraryWriter) closed(sid string) {
	w.mu.Lock()
	l := w.log
	w.mu.Unlock()
	if l != nil {
		os.Remove(filepath.Join(l.dir, sid))
	}
}

// remember notes a session of an item that could not be ended: the next
// commit of that item ends it first.
func (w *LibraryWriter) remember(itemID, sid string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.unended == nil {
		w.unended = map[string][]string{}
	}
	w.unended[itemID] = append(w.unended[itemID], sid)
}

// endUnended ends the sessions of itemID a failed commit left open.
func (w *LibraryWriter) endUnended(ctx context.Context, itemID string) {
	w.mu.Lock()
	sids := w.unended[itemID]
	delete(w.unended, itemID)
	w.mu.Unlock()
	for _, sid := range sids {
		if w.end(ctx, sid, itemID, true) {
			w.logger().Info("cancelled an update session a failed commit left open", "session", sid, "item", itemID)
			w.closed(sid)
		} else {
			w.remember(itemID, sid)
		}
	}
}

// abandon fails the session (or cancels it if fail is refused) so that
// nothing of it reaches the item, even if ctx was cancelled; if neither
// works it is remembered, and ended by the next commit of the item.
func (w *LibraryWriter) abandon(ctx context.Context, sid, itemID string) {
	if w.end(context.WithoutCancel(ctx), sid, itemID, false) {
		w.closed(sid)
		return
	}
	w.logger().Warn("update session left open; the next commit of the item ends it",
		"session", sid, "item", itemID, "call", "updatesession:fail/cancel")
	w.remember(itemID, sid)
}

// end fails a session (or cancels it, if fail is refused) or, cancelFirst,
// the other way round, retrying with a capped backoff for about the
// progress deadline. It says whether the session is no longer ACTIVE.
func (w *LibraryWriter) end(ctx context.Context, sid, itemID string, cancelFirst bool) bool {
	ctx, cancel := context.WithTimeout(ctx, max(w.Stall, 3*time.Second))
	defer cancel()
	calls := []struct {
		name string
		fn   func(lm *library.Manager, ctx context.Context, id string) error
	}{{"updatesession:fail", (*library.Manager).FailLibraryItemUpdateSession}, {"updatesession:cancel", (*library.Manager).CancelLibraryItemUpdateSession}}
	if cancelFirst {
		calls[0], calls[1] = calls[1], calls[0]
	}
	pause := 50 * time.Millisecond
	for {
		for _, c := range calls {
			err := w.c.Do(ctx, c.name, itemID, func(ctx context.Context) error { return c.fn(w.c.Library(), ctx, sid) })
			if err == nil || gone(err) {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

// gone says an end call failed because the session is not ACTIVE any more
// (ended, expired, or unknown to the server).
func gone(err error) bool {
	return errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrBusy) && strings.Contains(err.Error(), "not_allowed_in_current_state")
}

// keepAlive calls keep-alive on a session while a commit runs, at a third of
// the time the server gives it before it expires, until stop is closed.
func (w *LibraryWriter) keepAlive(sid, itemID string, stop <-chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	lm := w.c.Library()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-stop
		cancel()
	}()
	// Until the server has said when the session expires, keep it alive
	// every second: a get that failed must not leave a minute between
	// keep-alives (vCenter expires idle sessions in minutes, a test server
	// in seconds).
	every, known := time.Second, false
	for {
		if !known {
			err := w.c.Do(ctx, "updatesession:get", itemID, func(ctx context.Context) error {
				s, err := lm.GetLibraryItemUpdateSession(ctx, sid)
				if err == nil {
					every = time.Minute
					if s.ExpirationTime != nil {
						every = min(max(time.Until(*s.ExpirationTime)/3, 50*time.Millisecond), time.Minute)
					}
				}
				return err
			})
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				w.logger().Warn("session expiry unknown: keep-alive every second", "session", sid, "item", itemID, "call", "updatesession:get", "fault", err.Error())
			default:
				known = true
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
		err := w.c.Do(ctx, "updatesession:keep-alive", itemID, func(ctx context.Context) error {
			return lm.KeepAliveLibraryItemUpdateSession(ctx, sid)
		})
		if err != nil && ctx.Err() == nil {
			w.logger().Warn("keep-alive failed", "session", sid, "item", itemID, "call", "updatesession:keep-alive", "fault", err.Error())
		}
	}
}
