package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25/mo"
)

// Sessions records the vAPI sessions handed out, so that tests can expire
// them (vcsim's never expire) and check that clients log in again.
type Sessions struct {
	s  *Server
	mu sync.Mutex
	id []string
}

func newSessions(s *Server) *Sessions { return &Sessions{s: s} }

func (x *Sessions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	x.s.vapi.ServeHTTP(rec, r)
	if r.Method == http.MethodPost && r.URL.Query().Get("~action") == "" && rec.Code == http.StatusOK {
		var res struct {
			Value string `json:"value"`
		}
		if json.Unmarshal(rec.Body.Bytes(), &res) == nil && res.Value != "" {
			x.mu.Lock()
			x.id = append(x.id, res.Value)
			x.mu.Unlock()
		}
	}
	copyRecorded(w, rec)
}

// Expire ends every vAPI and SOAP session but the simulator's own, as a
// vCenter does when sessions time out.
func (x *Sessions) Expire(ctx context.Context) error {
	_, own, _, err := x.s.admin(ctx)
	if err != nil {
		return err
	}
	x.mu.Lock()
	ids := x.id
	x.id = nil
	x.mu.Unlock()
	for _, id := range ids {
		if id == own.SessionID() {
			continue
		}
		req := httptest.NewRequest(http.MethodDelete, rest.Path+"/com/vmware/cis/session", nil)
		req.Header.Set("vmware-api-session-id", id)
		x.s.vapi.ServeHTTP(httptest.NewRecorder(), req)
	}
	vc := x.s.adminC.vim
	var sm mo.SessionManager
	if err := property.DefaultCollector(vc).RetrieveOne(ctx, *vc.ServiceContent.SessionManager, []string{"sessionList", "currentSession"}, &sm); err != nil {
		return err
	}
	var keys []string
	for _, us := range sm.SessionList {
		if sm.CurrentSession == nil || us.Key != sm.CurrentSession.Key {
			keys = append(keys, us.Key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return session.NewManager(vc).TerminateSession(ctx, keys)
}
