package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25/types"
)

// LibraryData serves content library file data (/rest/com/vmware/cis/data/)
// outside vcsim's vAPI mutex, which vcsim holds for a whole transfer: with it,
// one paused reader would stall every other library call. Downloads are served
// here; uploads are handed to vcsim.
type LibraryData struct {
	s *Server

	ranges atomic.Bool  // answer Range requests with 206 (vcsim ignores Range)
	delay  atomic.Int64 // pause before each body, nanoseconds (tests of slow reads)
	rate   atomic.Int64 // bytes per second of a whole-body GET; 0: as fast as it goes (throttle.go)

	gets      atomic.Int64 // GET requests served
	rangeGets atomic.Int64 // of which answered with 206
	bytes     atomic.Int64 // body bytes written

	mu    sync.Mutex
	paths map[string]sessionDir // download session id -> item directory
}

func newLibraryData(s *Server) *LibraryData {
	return &LibraryData{s: s, paths: map[string]sessionDir{}}
}

// sessionDir is where a download session's item lives, and the item's
// content version when the session was created.
type sessionDir struct{ dir, version string }

// SetRanges switches Range support on or off.
func (d *LibraryData) SetRanges(on bool) { d.ranges.Store(on) }

// SetDelay makes each GET wait before sending its body.
func (d *LibraryData) SetDelay(t time.Duration) { d.delay.Store(int64(t)) }

// Stats returns how many GETs were served, how many as 206, and body bytes sent.
func (d *LibraryData) Stats() (gets, rangeGets, bytes int64) {
	return d.gets.Load(), d.rangeGets.Load(), d.bytes.Load()
}

func (d *LibraryData) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		d.s.Updates.put(w, r) // uploads: staged in their update session
		return
	}
	p := strings.Split(r.URL.Path, "/")
	id, name := p[len(p)-2], p[len(p)-1]
	dir, version, status := d.itemDir(r, id)
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	// The bytes as they were when the download session was created.
	f, err := os.Open(versionedPath(dir, version, path.Base(name)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed) // as vcsim answers
		return
	}
	d.gets.Add(1)
	if t := time.Duration(d.delay.Load()); t > 0 {
		select {
		case <-time.After(t):
		case <-r.Context().Done():
			return
		}
	}
	cw := &countingWriter{ResponseWriter: w, n: &d.bytes}
	if d.ranges.Load() {
		if r.Header.Get("Range") != "" {
			d.rangeGets.Add(1)
		}
		st, _ := f.Stat()
		http.ServeContent(cw, r, name, st.ModTime(), f)
		return
	}
	// vcsim: 200, the whole body, no Content-Length.
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 256<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := cw.Write(buf[:n]); werr != nil {
				return
			}
			if !d.pace(r.Context(), n) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// itemDir resolves a download session to the item's directory on the
// datastore and the content version it was opened at, asking vcsim (briefly,
// under its mutex) with the caller's session.
func (d *LibraryData) itemDir(r *http.Request, id string) (string, string, int) {
	d.mu.Lock()
	sd, ok := d.paths[id]
	d.mu.Unlock()
	if ok {
		return sd.dir, sd.version, http.StatusOK
	}
	dir, st := d.lookup(r, id)
	if st != http.StatusOK {
		return "", "", st
	}
	return dir.dir, dir.version, http.StatusOK
}

func (d *LibraryData) lookup(r *http.Request, id string) (sessionDir, int) {
	var sess library.Session
	if st := d.s.vapiGet(r, "/com/vmware/content/library/item/download-session/id:"+id, &sess); st != http.StatusOK {
		return sessionDir{}, st
	}
	var item library.Item
	if st := d.s.vapiGet(r, "/com/vmware/content/library/item/id:"+sess.LibraryItemID, &item); st != http.StatusOK {
		return sessionDir{}, st
	}
	var lib library.Library
	if st := d.s.vapiGet(r, "/com/vmware/content/library/id:"+item.LibraryID, &lib); st != http.StatusOK {
		return sessionDir{}, st
	}
	libDir, err := d.s.libraryDir(&lib)
	if err != nil {
		return sessionDir{}, http.StatusInternalServerError
	}
	sd := sessionDir{filepath.Join(libDir, item.ID), sess.LibraryItemContentVersion}
	d.mu.Lock()
	d.paths[id] = sd
	d.mu.Unlock()
	return sd, http.StatusOK
}

// vapiGet calls vcsim's vAPI handler in-process with the caller's credentials
// and decodes the {"value": …} answer.
func (s *Server) vapiGet(r *http.Request, p string, v any) int {
	req := httptest.NewRequest(http.MethodGet, rest.Path+p, nil)
	for _, h := range []string{"vmware-api-session-id", "Cookie", "Authorization"} {
		if x := r.Header.Get(h); x != "" {
			req.Header.Set(h, x)
		}
	}
	rec := httptest.NewRecorder()
	s.vapi.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return rec.Code
	}
	var res struct {
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &res) != nil || json.Unmarshal(res.Value, v) != nil {
		return http.StatusInternalServerError
	}
	return http.StatusOK
}

// datastoreURL is the local directory behind a datastore.
func (s *Server) datastoreURL(id string) (string, error) {
	ref := types.ManagedObjectReference{Type: "Datastore", Value: id}
	ds, ok := s.model.Service.Context.Map.Get(ref).(*simulator.Datastore)
	if !ok {
		return "", fmt.Errorf("datastore %s not found", id)
	}
	return ds.Info.GetDatastoreInfo().Url, nil
}
