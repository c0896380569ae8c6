package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
)

// LibraryChecks adds the checks vCenter makes on library and item names and
// storage that vcsim skips, then hands the call to vcsim: a local library
// needs a name and an existing datastore (vcsim panics on an unknown one);
// renaming an item to a name its library already holds fails with
// already_exists, as creating it would (vcsim renames regardless). Library
// names are left alone: two libraries may share a name (vspherefs shows the
// younger as name~id).
type LibraryChecks struct {
	s  *Server
	vc *vcsimLibrary
	mu sync.Mutex // serialises checked renames, so check-then-act holds
}

const (
	libraryPath      = rest.Path + "/com/vmware/content/library"
	localLibraryPath = rest.Path + "/com/vmware/content/local-library"
	libraryItemPath  = rest.Path + "/com/vmware/content/library/item/"
)

func (c *LibraryChecks) register(mux *http.ServeMux) {
	mux.HandleFunc(libraryPath, c.serveCreate)
	mux.HandleFunc(localLibraryPath, c.serveCreate)
	mux.HandleFunc(libraryItemPath, c.serveItem)
	// Roots of subtrees registered on our mux must be registered too, or the
	// mux answers them with a redirect to the root plus "/".
	mux.Handle(strings.TrimSuffix(libraryItemPath, "/"), c.s.vapi)
	mux.Handle(rest.Path+"/com/vmware/content/library/item/downloadsession/file", c.s.vapi)
}

// body reads a request body and puts it back for vcsim.
func body(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

func (c *LibraryChecks) serveCreate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Query().Get("~action") != "" {
		c.s.vapi.ServeHTTP(w, r)
		return
	}
	var spec struct {
		Library library.Library `json:"create_spec"`
	}
	if json.Unmarshal(body(r), &spec) != nil {
		c.s.vapi.ServeHTTP(w, r) // vcsim answers bad bodies
		return
	}
	l := spec.Library
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.TrimSpace(l.Name) == "" {
		vapiError(w, errInvalidArgument, "a library needs a name")
		return
	}
	if l.Type != "SUBSCRIBED" {
		if len(l.Storage) == 0 {
			vapiError(w, errInvalidArgument, "library %q has no storage backing", l.Name)
			return
		}
		for _, b := range l.Storage {
			if _, err := c.s.datastoreURL(b.DatastoreID); err != nil {
				vapiError(w, errInvalidArgument, "storage backing of library %q: datastore %q not found", l.Name, b.DatastoreID)
				return
			}
		}
	}
	c.s.vapi.ServeHTTP(w, r)
}

func (c *LibraryChecks) serveItem(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPatch {
		c.s.vapi.ServeHTTP(w, r)
		return
	}
	var spec struct {
		Item library.Item `json:"update_spec"`
	}
	_ = json.Unmarshal(body(r), &spec)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := spec.Item.Name; n != "" {
		if !validName(n) {
			vapiError(w, errInvalidArgument, "invalid item name %q", n)
			return
		}
		id := sessionID(r)
		c.vc.Lock()
		taken := false
		if it := c.vc.item(id); it != nil {
			for _, other := range c.vc.items(it.Library.ID) {
				taken = taken || (other.ID != id && other.Name == n)
			}
		}
		c.vc.Unlock()
		if taken {
			vapiError(w, errAlreadyExists, "an item named %q already exists in the library", n)
			return
		}
	}
	c.s.vapi.ServeHTTP(w, r)
}
