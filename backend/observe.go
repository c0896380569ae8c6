package backend

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"time"

	"github.com/vmware/govmomi/vim25/soap"

	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/status"
)

// Observer sees what a connection does, for status and metrics: every API
// call made through Conn.Do, and every HTTP request of the transfer client
// (Conn.HTTP, which SOAP calls share). Set it in Config.Observer; nil is none.
type Observer interface {
	// Call is told of each API call when it returns (err nil: it succeeded).
	Call(call string, took time.Duration, err error)
	// Transport wraps the HTTP transport of the connection.
	Transport(http.RoundTripper) http.RoundTripper
}

// FaultName names the fault of a failed call for counting: the vSphere fault
// type (NotFound, InvalidLogin…), the vAPI error type (not_found…), Timeout,
// Canceled, or "error". Never a message (it may name paths or users).
func FaultName(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return "Timeout"
	case errors.Is(err, context.Canceled):
		return "Canceled"
	}
	var be *remote.Error
	if errors.As(err, &be) && be.Err != nil {
		err = be.Err
	}
	if soap.IsVimFault(err) {
		return typeName(soap.ToVimFault(err))
	}
	if soap.IsSoapFault(err) {
		if f := soap.ToSoapFault(err); f != nil {
			if v := f.VimFault(); v != nil {
				return typeName(v)
			}
			return "SoapFault"
		}
	}
	if m := vapiType.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return "error"
}

func typeName(v any) string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Name() == "" {
		return "fault"
	}
	return t.Name()
}

// RetryObserver is an Observer that also counts retries.
type RetryObserver interface {
	Retry(call string)
}

// NoteRetry tells the connection's observer, if it counts them, that call
// is being tried again (a 503, a reset): where the backend retries, it calls this.
func (c *Conn) NoteRetry(call string) {
	if r, ok := c.Config.Observer.(RetryObserver); ok {
		r.Retry(call)
	}
}

// StepObserver is an Observer that also lists, with the transfers in
// flight, the steps that move no bytes of their own: a library file's
// prepare, a commit, an export's lease.
type StepObserver interface {
	Step(kind, path, state string) *status.Live
}

// Step lists a step for the mount path ctx carries (status.WithOrigin), else
// for on; End it when it is over. Nil (which End and SetState take) when
// the observer does not list steps.
func (c *Conn) Step(ctx context.Context, kind, on, state string) *status.Live {
	s, ok := c.Config.Observer.(StepObserver)
	if !ok {
		return nil
	}
	if o := status.Origin(ctx); o != "" {
		on = o
	}
	return s.Step(kind, on, state)
}

// WithOrigin attaches origin, the mount path a transfer is for, to ctx
// unless ctx has one already (status.WithOrigin).
func WithOrigin(ctx context.Context, origin string) context.Context {
	if origin == "" || status.Origin(ctx) != "" {
		return ctx
	}
	return status.WithOrigin(ctx, origin)
}
