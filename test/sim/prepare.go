package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"sync"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
)

// PrepareSteps makes download-session prepare behave as vCenter's does: a
// prepare answers PREPARE_REQUESTED, then the file goes through PREPARING
// before PREPARED (vcsim answers PREPARED at once). A file can be made to fail
// its preparation with an error message.
type PrepareSteps struct {
	s *Server

	mu     sync.Mutex
	polls  map[string]int    // session/file -> gets seen since prepare
	fail   map[string]string // file name -> error message
	counts map[string]int    // file name -> prepare calls
}

func newPrepareSteps(s *Server) *PrepareSteps {
	return &PrepareSteps{s: s, polls: map[string]int{}, fail: map[string]string{}, counts: map[string]int{}}
}

// Fail makes every preparation of the named file end in ERROR with msg ("" clears it).
func (p *PrepareSteps) Fail(name, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if msg == "" {
		delete(p.fail, name)
	} else {
		p.fail[name] = msg
	}
}

// Count is the number of prepare calls made for a file name.
func (p *PrepareSteps) Count(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[name]
}

func (p *PrepareSteps) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	action := r.URL.Query().Get("~action")
	if r.Method != http.MethodPost || (action != "prepare" && action != "get") {
		p.s.vapi.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var spec struct {
		File string `json:"file_name"`
	}
	_ = json.Unmarshal(body, &spec)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	p.s.vapi.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		copyRecorded(w, rec)
		return
	}
	var res struct {
		Value *library.DownloadFile `json:"value"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &res) != nil || res.Value == nil {
		copyRecorded(w, rec)
		return
	}
	key := path.Base(r.URL.Path) + "/" + spec.File
	info := res.Value
	p.mu.Lock()
	if action == "prepare" {
		p.counts[spec.File]++
		p.polls[key] = 0
	}
	n, tracked := p.polls[key]
	if tracked && action == "get" {
		n++
		p.polls[key] = n
	}
	msg, failing := p.fail[spec.File]
	p.mu.Unlock()
	if tracked {
		switch {
		case n == 0:
			info.Status, info.DownloadEndpoint = "PREPARE_REQUESTED", nil
		case n == 1:
			info.Status, info.DownloadEndpoint = "PREPARING", nil
		case failing:
			info.Status, info.DownloadEndpoint = "ERROR", nil
			info.ErrorMessage = &rest.LocalizableMessage{ID: "com.vmware.vdcs.cls-main.prepare_error", DefaultMessage: msg}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Value *library.DownloadFile `json:"value"`
	}{info})
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}
