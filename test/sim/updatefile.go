package sim

import (
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
)

// checksums vCenter (6.8 and later) accepts in a file's checksum_info.
var checksumAlgorithms = []string{"MD5", "SHA1", "SHA256", "SHA512"}

// serveFiles: the file list of a session (GET), and probe (passed to vcsim).
func (u *UpdateSessions) serveFiles(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		u.s.vapi.ServeHTTP(w, r) // ~action=probe: vcsim's is fine
		return
	}
	if !u.authorized(w, r) {
		return
	}
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	id := r.URL.Query().Get("update_session_id")
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.sessions[id]
	if !ok {
		vapiError(w, errNotFound, "update session %q not found", id)
		return
	}
	var names []string
	for n := range s.base {
		if !s.removed[n] && s.files[n] == nil {
			names = append(names, n)
		}
	}
	for n := range s.files {
		names = append(names, n)
	}
	sort.Strings(names)
	res := []library.UpdateFile{}
	for _, n := range names {
		f, _ := u.fileInfo(s, n)
		res = append(res, f)
	}
	vapiOK(w, res)
}

// fileInfo is what get answers for a file name in a session; call with u.mu held.
func (u *UpdateSessions) fileInfo(s *updateSession, name string) (library.UpdateFile, bool) {
	if f, ok := s.files[name]; ok {
		info := f.UpdateFile
		info.BytesTransferred = f.received.Load()
		return info, true
	}
	if b, ok := s.base[name]; ok && !s.removed[name] {
		// A file the session leaves alone: as it was when the session began.
		info := library.UpdateFile{Name: name, SourceType: "NONE", Status: "READY", Checksum: b.Checksum}
		if b.Size != nil {
			info.Size, info.BytesTransferred = *b.Size, *b.Size
		}
		return info, true
	}
	return library.UpdateFile{}, false
}

// serveFile: the add, get, remove and validate actions on one session.
func (u *UpdateSessions) serveFile(w http.ResponseWriter, r *http.Request) {
	if !u.authorized(w, r) {
		return
	}
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	var spec struct {
		File library.UpdateFile `json:"file_spec"`
		Name string             `json:"file_name"`
	}
	if !decodeBody(w, r, &spec) {
		return
	}
	id := sessionID(r)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.expire()
	s, ok := u.sessions[id]
	if !ok {
		vapiError(w, errNotFound, "update session %q not found", id)
		return
	}
	u.touch(s)
	action := r.URL.Query().Get("~action")
	if action != "get" && s.State != "ACTIVE" {
		vapiError(w, errNotAllowed, "update session %s is %s", s.ID, s.State)
		return
	}
	switch action {
	case "add":
		u.add(w, s, spec.File)
	case "get":
		info, ok := u.fileInfo(s, spec.Name)
		if !ok {
			vapiError(w, errInvalidArgument, "file %q is not in library item %s", spec.Name, s.LibraryItemID)
			return
		}
		vapiOK(w, info)
	case "remove":
		if f, ok := s.files[spec.Name]; ok {
			delete(u.uploads, f.id)
			if f.staged != "" {
				_ = os.Remove(f.staged)
			}
			delete(s.files, spec.Name)
			if _, inBase := s.base[spec.Name]; inBase {
				s.removed[spec.Name] = true
			}
			vapiOK(w, nil)
			return
		}
		if _, ok := s.base[spec.Name]; !ok || s.removed[spec.Name] {
			vapiError(w, errInvalidArgument, "file %q is not in library item %s", spec.Name, s.LibraryItemID)
			return
		}
		s.removed[spec.Name] = true
		vapiOK(w, nil)
	case "validate":
		if u.fault(FailValidate) {
			vapiError(w, errInternal, "injected fault: update session validate")
			return
		}
		vapiOK(w, u.validate(s))
	default:
		vapiError(w, errInvalidArgument, "unknown action %q", action)
	}
}

// validName is vcsim's rule for file names (they become paths on the datastore).
func validName(n string) bool {
	return n != "" && n != "." && !strings.ContainsAny(n, "/\\") && !strings.Contains(n, "..")
}

// add defines or redefines a file; call with u.mu held.
func (u *UpdateSessions) add(w http.ResponseWriter, s *updateSession, spec library.UpdateFile) {
	if u.fault(FailAdd) {
		vapiError(w, errInternal, "injected fault: update session file add")
		return
	}
	if !validName(spec.Name) {
		vapiError(w, errInvalidArgument, "invalid file name %q", spec.Name)
		return
	}
	if c := spec.Checksum; c != nil && c.Checksum != "" {
		if c.Algorithm == "" {
			c.Algorithm = "SHA1" // the API's default
		}
		if !u.algorithms[c.Algorithm] {
			vapiError(w, errInvalidArgument, "unsupported checksum algorithm %q", c.Algorithm)
			return
		}
	} else {
		spec.Checksum = nil
	}
	if spec.SourceType != "PUSH" && spec.SourceType != "PULL" {
		vapiError(w, errInvalidArgument, "unsupported source type %q", spec.SourceType)
		return
	}
	if spec.SourceType == "PULL" && (spec.SourceEndpoint == nil || spec.SourceEndpoint.URI == "") {
		vapiError(w, errInvalidArgument, "PULL needs a source endpoint")
		return
	}
	// Adding a name again redefines that file (no second entry).
	if old, ok := s.files[spec.Name]; ok {
		delete(u.uploads, old.id)
		if old.staged != "" {
			_ = os.Remove(old.staged)
		}
	}
	delete(s.removed, spec.Name)
	f := &updateFile{id: newUUID(), sess: s}
	f.UpdateFile = library.UpdateFile{
		Name:       spec.Name,
		SourceType: spec.SourceType,
		Checksum:   spec.Checksum,
		Size:       spec.Size, // as declared; a different size received is an error
		Status:     "WAITING_FOR_TRANSFER",
	}
	s.files[spec.Name] = f
	u.uploads[f.id] = f
	switch spec.SourceType {
	case "PUSH":
		ep := url.URL{Scheme: u.s.URL.Scheme, Host: u.s.URL.Host, Path: path.Join(rest.Path, "/com/vmware/cis/data", f.id, f.Name)}
		f.UploadEndpoint = &library.TransferEndpoint{URI: ep.String()}
	case "PULL":
		f.SourceEndpoint = spec.SourceEndpoint
		f.Status = "TRANSFERRING"
		s.pulls.Add(1)
		s.busy++
		go u.pull(f)
	}
	info := f.UpdateFile
	vapiOK(w, info)
}

// validate reports files not yet received, files in error, and files that an
// .ovf of the resulting item references but the item will not hold (vCenter
// validates an OVF template as a whole); call with u.mu held.
func (u *UpdateSessions) validate(s *updateSession) library.UpdateFileValidation {
	var v library.UpdateFileValidation
	result := map[string]bool{}
	for n := range s.base {
		if !s.removed[n] {
			result[n] = true
		}
	}
	var names []string
	for n := range s.files {
		names = append(names, n)
		result[n] = true
	}
	sort.Strings(names)
	for _, n := range names {
		f := s.files[n]
		switch f.Status {
		case "READY":
		case "ERROR":
			msg := rest.LocalizableMessage{DefaultMessage: "transfer failed"}
			if f.ErrorMessage != nil {
				msg = *f.ErrorMessage
			}
			v.InvalidFiles = append(v.InvalidFiles, library.FileValidationError{Name: n, ErrorMessage: msg})
		default:
			v.MissingFiles = append(v.MissingFiles, n)
		}
	}
	for _, n := range names {
		f := s.files[n]
		if !strings.EqualFold(path.Ext(n), ".ovf") || f.Status != "READY" {
			continue
		}
		refs, err := ovfReferences(f.staged)
		if err != nil {
			v.InvalidFiles = append(v.InvalidFiles, library.FileValidationError{Name: n,
				ErrorMessage: rest.LocalizableMessage{ID: "com.vmware.vdcs.cls-main.invalid_ovf", DefaultMessage: "not a valid OVF descriptor: " + err.Error()}})
			continue
		}
		for _, ref := range refs {
			if !result[ref] {
				v.MissingFiles = append(v.MissingFiles, ref)
				result[ref] = true // report once
			}
		}
	}
	v.HasErrors = len(v.MissingFiles)+len(v.InvalidFiles) > 0
	return v
}

// ovfReferences lists the file names an OVF descriptor references.
func ovfReferences(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	e, err := ovf.Unmarshal(f)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, r := range e.References {
		refs = append(refs, filepath.Base(r.Href))
	}
	return refs, nil
}
