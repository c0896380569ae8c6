package sim

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
)

// UpdateSessions owns content library update sessions, replacing vcsim's,
// which write each PUT straight into the live item, append a second entry when
// a name is uploaded again, delete the whole session on file remove, never
// check checksums and never bump content_version. Here, as vCenter does:
// uploads are staged per session and applied to the item only when the
// session completes; cancel, fail and delete leave the item as it was; one
// active session per item; PUSH files go READY with their size once received,
// or ERROR on a checksum mismatch; validate reports missing and invalid files
// (including files an .ovf references). The /rest shapes are the ones
// govmomi's vapi/library speaks, so govc library.import keeps working.
type UpdateSessions struct {
	s  *Server
	vc *vcsimLibrary

	mu          sync.Mutex // before vc's lock, never after it
	sessions    map[string]*updateSession
	uploads     map[string]*updateFile // upload endpoint id -> file
	faults      map[string]int         // step -> calls still to fail
	resetAt     int64                  // a failing PUT reads this many bytes first; <0: half
	donePolls   int                    // gets answered ACTIVE after a complete
	algorithms  map[string]bool        // checksum algorithms accepted
	expiry      time.Duration          // idle time after which a session expires
	strict      bool                   // transfers in flight do not keep a session from expiring
	stallFor    time.Duration          // a stalled PUT stops reading this long (or until Close)
	stallAt     int64                  // a stalled PUT reads this many bytes first; <0: half its Content-Length
	closed      chan struct{}          // closed by Close: stalled PUTs return
	keepAlives  atomic.Int64
	putDelay    atomic.Int64 // pause before a PUT's body is read (slow uploads)
	completed   atomic.Int64
	receivedAll atomic.Int64
}

type updateSession struct {
	library.Session
	dir     string                  // staging directory for received bytes
	base    map[string]library.File // the item's files when the session was created
	files   map[string]*updateFile  // files added in this session, by name
	removed map[string]bool         // base files removed in this session
	pulls   sync.WaitGroup          // PULL transfers in flight
	busy    int                     // transfers in flight (a session does not expire under one)
	polls   int                     // gets still to answer ACTIVE after complete
}

type updateFile struct {
	library.UpdateFile
	id       string // upload endpoint id
	resets   bool   // every PUT to it is reset (FailPut)
	sess     *updateSession
	staged   string // received bytes, once READY
	received atomic.Int64
}

func newUpdateSessions(s *Server) (*UpdateSessions, error) {
	vc, err := newVcsimLibrary(s.vapi)
	if err != nil {
		return nil, err
	}
	u := &UpdateSessions{
		s: s, vc: vc,
		sessions: map[string]*updateSession{},
		uploads:  map[string]*updateFile{},
		faults:   map[string]int{},
		resetAt:  -1,
		expiry:   5 * time.Minute,
		stallFor: time.Minute,
		stallAt:  -1,
		closed:   make(chan struct{}),
	}
	u.SetChecksumAlgorithms(checksumAlgorithms...)
	return u, nil
}

// Fault steps for FailNext.
const (
	FailCreate   = "create"    // session create answers internal_server_error
	FailAdd      = "add"       // file add answers internal_server_error
	FailPut      = "put"       // the data PUTs of the next file drop the connection mid-body, every attempt (see FailPutAfter)
	FailPutOnce  = "put-once"  // the next data PUT drops the connection mid-body (a retry gets through)
	FailPut503   = "put-503"   // the next data PUT is answered 503 Service Unavailable without reading it
	StallPut     = "put-stall" // the next data PUT stops reading its body halfway (see SetStall)
	FailFail     = "fail"      // session fail answers internal_server_error
	FailCancel   = "cancel"    // session cancel answers internal_server_error
	FailValidate = "validate"  // validate answers internal_server_error
	FailComplete = "complete"  // complete answers internal_server_error; the session stays ACTIVE
	FailGet      = "get"       // the next session get answers internal_server_error
	FailApply    = "apply"     // complete is accepted, then the session ends in ERROR
)

// FailNext makes the next call of a step fail (see the Fail* constants).
// Each call adds one failure.
func (u *UpdateSessions) FailNext(step string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.faults[step]++
}

// ClearFaults drops every injected failure not yet consumed.
func (u *UpdateSessions) ClearFaults() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.faults = map[string]int{}
}

// SetStrictExpiry makes a transfer in flight not count as activity: only
// calls (keep-alive among them) keep an idle session from expiring.
func (u *UpdateSessions) SetStrictExpiry(strict bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.strict = strict
}

// SetStall sets how long a stalled PUT (StallPut) stops reading before it
// gives up; Close ends it sooner.
func (u *UpdateSessions) SetStall(d time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.stallFor = d
}

// SetStallAfter sets how many body bytes a stalled PUT (StallPut) reads
// before it stops; negative (the default) means half of its Content-Length,
// which is none for a chunked (streamed) body.
func (u *UpdateSessions) SetStallAfter(n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.stallAt = n
}

// KeepAlives counts keep-alive calls on update sessions.
func (u *UpdateSessions) KeepAlives() int64 { return u.keepAlives.Load() }

// close ends stalled PUTs (the server is stopping).
func (u *UpdateSessions) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	select {
	case <-u.closed:
	default:
		close(u.closed)
	}
}

// FailPutAfter sets how many body bytes a failing PUT reads before it closes
// the connection; negative means half of the Content-Length.
func (u *UpdateSessions) FailPutAfter(n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.resetAt = n
}

// SetDonePolls makes a completed session answer ACTIVE to that many gets
// before DONE, as vCenter completes asynchronously.
func (u *UpdateSessions) SetDonePolls(n int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.donePolls = n
}

// SetChecksumAlgorithms sets the checksum algorithms a file add accepts
// (vCenter before 6.8 took only SHA1 and MD5).
func (u *UpdateSessions) SetChecksumAlgorithms(algs ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.algorithms = map[string]bool{}
	for _, a := range algs {
		u.algorithms[a] = true
	}
}

// Received counts the bytes received by uploads (PUT and PULL), for tests
// that act mid-transfer and for benchmarks.
func (u *UpdateSessions) Received() int64 { return u.receivedAll.Load() }

// Completed counts sessions that completed and were applied.
func (u *UpdateSessions) Completed() int64 { return u.completed.Load() }

// Active lists the IDs of active sessions on an item ("" for all items).
func (u *UpdateSessions) Active(itemID string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var ids []string
	for id, s := range u.sessions {
		if s.State == "ACTIVE" && (itemID == "" || s.LibraryItemID == itemID) {
			ids = append(ids, id)
		}
	}
	return ids
}

// injected consumes one injected failure of step; call without u.mu held.
func (u *UpdateSessions) injected(step string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.fault(step)
}

// fault consumes one injected failure of step; call with u.mu held.
func (u *UpdateSessions) fault(step string) bool {
	if u.faults[step] > 0 {
		u.faults[step]--
		return true
	}
	return false
}

// authorized checks the caller's vAPI session with vcsim (the same check
// vcsim makes), answering 401 if it is not valid. Call without u.mu held.
func (u *UpdateSessions) authorized(w http.ResponseWriter, r *http.Request) bool {
	var sess rest.Session
	if u.s.vapiGet(r, "/com/vmware/cis/session", &sess) != http.StatusOK {
		vapiError(w, errUnauthenticated, "session is not authenticated")
		return false
	}
	return true
}

// Patterns this type serves on the server's mux.
const (
	updateSessionPath     = rest.Path + "/com/vmware/content/library/item/update-session"
	updateSessionFilePath = rest.Path + "/com/vmware/content/library/item/updatesession/file"
)

func (u *UpdateSessions) register(mux *http.ServeMux) {
	mux.HandleFunc(updateSessionPath, u.serveSessions)
	mux.HandleFunc(updateSessionPath+"/", u.serveSession)
	mux.HandleFunc(updateSessionFilePath, u.serveFiles)
	mux.HandleFunc(updateSessionFilePath+"/", u.serveFile)
}

// sessionID is the id in a ".../id:<id>" path, or "".
func sessionID(r *http.Request) string {
	base := path.Base(r.URL.Path)
	if !strings.HasPrefix(base, "id:") {
		return ""
	}
	return strings.TrimPrefix(base, "id:")
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// decodeBody decodes a JSON request body into v; an empty body leaves v as is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(r.Body)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		vapiError(w, errInvalidArgument, "bad request body: %v", err)
		return false
	}
	return true
}

// serveSessions: list (GET) and create (POST).
func (u *UpdateSessions) serveSessions(w http.ResponseWriter, r *http.Request) {
	if !u.authorized(w, r) {
		return
	}
	switch r.Method {
	case http.MethodGet:
		u.mu.Lock()
		ids := []string{}
		for id := range u.sessions {
			ids = append(ids, id)
		}
		u.mu.Unlock()
		vapiOK(w, ids)
	case http.MethodPost:
		if a := r.URL.Query().Get("~action"); a != "" && a != "create" {
			vapiError(w, errInvalidArgument, "unknown action %q", a)
			return
		}
		var spec struct {
			Session library.Session `json:"create_spec"`
		}
		if !decodeBody(w, r, &spec) {
			return
		}
		u.create(w, spec.Session.LibraryItemID)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (u *UpdateSessions) create(w http.ResponseWriter, itemID string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.expire()
	if u.fault(FailCreate) {
		vapiError(w, errInternal, "injected fault: update session create")
		return
	}
	for _, s := range u.sessions {
		if s.LibraryItemID == itemID && s.State == "ACTIVE" {
			vapiError(w, errResourceBusy, "library item %s already has an active update session %s", itemID, s.ID)
			return
		}
	}
	u.vc.Lock()
	it := u.vc.item(itemID)
	var (
		lib     *library.Library
		version string
		base    = map[string]library.File{}
	)
	if it != nil {
		lib, version = it.Library, it.Item.ContentVersion
		for _, f := range it.Files() {
			base[f.Name] = f
		}
	}
	u.vc.Unlock()
	if it == nil {
		vapiError(w, errNotFound, "library item %s not found", itemID)
		return
	}
	if lib.Type == "SUBSCRIBED" {
		vapiError(w, errInvalidElemType, "library item %s is in a subscribed library", itemID)
		return
	}
	libDir, err := u.s.libraryDir(lib)
	if err != nil {
		vapiError(w, errInternal, "%v", err)
		return
	}
	id := newUUID()
	dir := filepath.Join(libDir, ".updates", id)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		vapiError(w, errInternal, "%v", err)
		return
	}
	exp := time.Now().Add(u.expiry)
	u.sessions[id] = &updateSession{
		Session: library.Session{
			ID:                        id,
			LibraryItemID:             itemID,
			LibraryItemContentVersion: version,
			State:                     "ACTIVE",
			ExpirationTime:            &exp,
		},
		dir:     dir,
		base:    base,
		files:   map[string]*updateFile{},
		removed: map[string]bool{},
	}
	vapiOK(w, id)
}

// serveSession: get, delete, and the cancel/complete/fail/keep-alive actions.
func (u *UpdateSessions) serveSession(w http.ResponseWriter, r *http.Request) {
	if !u.authorized(w, r) {
		return
	}
	id := sessionID(r)
	u.mu.Lock()
	u.expire()
	s, ok := u.sessions[id]
	if ok {
		u.touch(s)
	}
	u.mu.Unlock()
	if !ok {
		vapiError(w, errNotFound, "update session %q not found", id)
		return
	}
	switch r.Method {
	case http.MethodGet:
		u.mu.Lock()
		failed := u.fault(FailGet)
		u.mu.Unlock()
		if failed {
			vapiError(w, errInternal, "injected fault: session get")
			return
		}
		u.mu.Lock()
		v := s.Session
		if v.State == "DONE" && s.polls > 0 {
			s.polls--
			v.State = "ACTIVE"
		}
		u.mu.Unlock()
		vapiOK(w, v)
	case http.MethodDelete:
		// The item stays as it was: staged bytes go with the session.
		u.mu.Lock()
		u.end(s, s.State, nil)
		delete(u.sessions, id)
		u.mu.Unlock()
		vapiOK(w, nil)
	case http.MethodPost:
		switch a := r.URL.Query().Get("~action"); a {
		case "cancel":
			if u.injected(FailCancel) {
				vapiError(w, errInternal, "injected fault: update session cancel")
				return
			}
			u.finish(w, s, "CANCELED", nil)
		case "fail":
			if u.injected(FailFail) {
				vapiError(w, errInternal, "injected fault: update session fail")
				return
			}
			var spec struct {
				Message string `json:"client_error_message"`
			}
			if !decodeBody(w, r, &spec) {
				return
			}
			msg := spec.Message
			if msg == "" {
				msg = "failed by the client"
			}
			u.finish(w, s, "ERROR", &rest.LocalizableMessage{ID: "com.vmware.vdcs.cls-main.client_error", DefaultMessage: msg})
		case "complete":
			u.complete(w, s)
		case "keep-alive":
			u.keepAlives.Add(1)
			vapiOK(w, nil) // touched above, like every call
		default:
			vapiError(w, errInvalidArgument, "unknown action %q", a)
		}
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// finish ends an active session without applying it (cancel, fail).
func (u *UpdateSessions) finish(w http.ResponseWriter, s *updateSession, state string, msg *rest.LocalizableMessage) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.State != "ACTIVE" {
		vapiError(w, errNotAllowed, "update session %s is %s", s.ID, s.State)
		return
	}
	u.end(s, state, msg)
	vapiOK(w, nil)
}

// SetExpiry sets how long a session may sit idle (no call, no transfer)
// before it expires; vCenter's are minutes, tests use less.
func (u *UpdateSessions) SetExpiry(d time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.expiry = d
}

// touch pushes a session's expiration back; call with u.mu held.
func (u *UpdateSessions) touch(s *updateSession) {
	exp := time.Now().Add(u.expiry)
	s.ExpirationTime = &exp
}

// expire ends idle active sessions (freeing their items for new sessions, as
// vCenter does for a client that went away) and forgets ended sessions once
// they have been idle as long; call with u.mu held.
func (u *UpdateSessions) expire() {
	now := time.Now()
	for id, s := range u.sessions {
		if s.busy > 0 && !u.strict || s.ExpirationTime.After(now) {
			continue
		}
		if s.State == "ACTIVE" {
			u.end(s, "ERROR", &rest.LocalizableMessage{ID: "com.vmware.vdcs.cls-main.session_expired", DefaultMessage: "update session expired"})
			continue
		}
		delete(u.sessions, id)
	}
}

// end sets a session's final state and drops its staged bytes and upload
// endpoints; call with u.mu held.
func (u *UpdateSessions) end(s *updateSession, state string, msg *rest.LocalizableMessage) {
	u.touch(s) // an ended session stays visible for a while
	s.State, s.ErrorMessage = state, msg
	for _, f := range s.files {
		delete(u.uploads, f.id)
	}
	_ = os.RemoveAll(s.dir)
}

// complete validates the session and applies it to the item.
func (u *UpdateSessions) complete(w http.ResponseWriter, s *updateSession) {
	s.pulls.Wait() // vCenter completes once server-side pulls have finished
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.State != "ACTIVE" {
		vapiError(w, errNotAllowed, "update session %s is %s", s.ID, s.State)
		return
	}
	if u.fault(FailComplete) {
		vapiError(w, errInternal, "injected fault: update session complete")
		return
	}
	if v := u.validate(s); v.HasErrors {
		vapiError(w, errNotAllowed, "update session %s: %s", s.ID, describe(v))
		return
	}
	if u.fault(FailApply) {
		u.end(s, "ERROR", &rest.LocalizableMessage{ID: "com.vmware.vdcs.cls-main.apply_error", DefaultMessage: "injected fault: applying the update session failed"})
		vapiOK(w, nil)
		return
	}
	if err := u.apply(s); err != nil {
		u.end(s, "ERROR", &rest.LocalizableMessage{ID: "com.vmware.vdcs.cls-main.apply_error", DefaultMessage: err.Error()})
		vapiOK(w, nil)
		return
	}
	u.end(s, "DONE", nil)
	s.polls = u.donePolls
	u.completed.Add(1)
	vapiOK(w, nil)
}

// describe summarises a failed validation for an error message.
func describe(v library.UpdateFileValidation) string {
	var parts []string
	if len(v.MissingFiles) > 0 {
		parts = append(parts, "missing files: "+strings.Join(v.MissingFiles, ", "))
	}
	for _, f := range v.InvalidFiles {
		parts = append(parts, f.Name+": "+f.ErrorMessage.DefaultMessage)
	}
	return strings.Join(parts, "; ")
}
