package sim

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/vmware/govmomi/vapi/rest"
)

// vAPI standard error types, as the old /rest API names them in "type".
const (
	errNotFound        = "com.vmware.vapi.std.errors.not_found"
	errAlreadyExists   = "com.vmware.vapi.std.errors.already_exists"
	errInvalidArgument = "com.vmware.vapi.std.errors.invalid_argument"
	errInvalidElemType = "com.vmware.vapi.std.errors.invalid_element_type"
	errNotAllowed      = "com.vmware.vapi.std.errors.not_allowed_in_current_state"
	errResourceBusy    = "com.vmware.vapi.std.errors.resource_busy"
	errInternal        = "com.vmware.vapi.std.errors.internal_server_error"
	errUnauthenticated = "com.vmware.vapi.std.errors.unauthenticated"
)

// vapiError answers a /rest call with a vAPI error the way vCenter shapes it:
// {"type": …, "value": {"messages": [LocalizableMessage…]}}, with the status
// code the REST gateway uses for that type (vcsim sends bare strings and
// mostly 400 or 500).
func vapiError(w http.ResponseWriter, kind, format string, args ...any) {
	status := http.StatusBadRequest
	switch kind {
	case errNotFound:
		status = http.StatusNotFound
	case errUnauthenticated:
		status = http.StatusUnauthorized
	case errInternal:
		status = http.StatusInternalServerError
	}
	msg := rest.LocalizableMessage{
		ID:             "com.vmware.vdcs.cls-main." + kind[len("com.vmware.vapi.std.errors."):],
		DefaultMessage: fmt.Sprintf(format, args...),
		Args:           []string{},
	}
	var body struct {
		Type  string `json:"type"`
		Value struct {
			Messages []rest.LocalizableMessage `json:"messages"`
		} `json:"value"`
	}
	body.Type = kind
	body.Value.Messages = []rest.LocalizableMessage{msg}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// vapiOK answers {"value": v}, or an empty 200 when v is nil, as vcsim does.
func vapiOK(w http.ResponseWriter, v any) {
	if v == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Value any `json:"value"`
	}{v})
}
