package backend

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/view"

	"github.com/vspherefs/vspherefs/remote"
)

// Retries: what is safe to try again, and how long to wait in between.
//
// The budget is the one deadline (--timeout): a call and all its retries
// share it, so a call never takes longer than --timeout whatever fails. In
// between, the wait doubles from retryBase up to retryCap, with full jitter.

const (
	retryBase = 100 * time.Millisecond
	retryCap  = 2 * time.Second
)

// Backoff is the wait before retry number attempt (0 for the first retry).
func Backoff(attempt int) time.Duration {
	d := retryBase << min(attempt, 10)
	if d > retryCap || d <= 0 {
		d = retryCap
	}
	return d/2 + rand.N(d/2+1) // jitter, never less than half the step
}

// SleepCtx waits d, or less if ctx ends (and then says so).
func SleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// idempotent lists the calls that can be sent again after any transient
// failure, a lost connection included: reads, polls and calls whose repeat
// has the same effect. Other calls are retried only when the server cannot
// have seen them (refused connections).
var idempotent = map[string]bool{
	"library:list":                  true,
	"library:get":                   true,
	"library/item:list":             true,
	"library/item:get":              true,
	"library/item/file:list":        true,
	"SessionIsActive":               true,
	"downloadsession/file:prepare":  true,
	"downloadsession/file:get":      true,
	"download-session:keep-alive":   true,
	"RetrieveProperties":            true,
	"ListFilesInGuest":              true,
	"InitiateFileTransferFromGuest": true,
	"Datastore:list":                true,
	"updatesession/file:get":        true,
	"updatesession:get":             true,
}

// unprocessedOn503 lists calls that are not idempotent but may be sent
// again after a 503, which says the server did not do them: a download
// session created twice would outlive the mount.
var unprocessedOn503 = map[string]bool{
	"download-session:create": true,
}

// Retryable reports whether a call may be sent again after err.
func retryable(call string, err error) bool {
	if notSent(err) {
		return true
	}
	if unprocessedOn503[call] && isStatus(err, http.StatusServiceUnavailable) {
		return true
	}
	return idempotent[call] && Transient(err)
}

// notSent reports failures the server cannot have acted on: the connection
// was refused.
func notSent(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// Transient reports failures worth another try: 503, a connection reset,
// aborted or refused, a body cut short. Deadlines and cancellations are not:
// the one deadline is spent.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStalled) {
		return false
	}
	if isStatus(err, http.StatusServiceUnavailable) {
		return true
	}
	for _, e := range []error{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE, io.ErrUnexpectedEOF, errTransport} {
		if errors.Is(err, e) {
			return true
		}
	}
	if errors.Is(err, io.EOF) {
		return true // a connection closed before the response
	}
	msg := err.Error()
	return strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe") ||
		strings.Contains(msg, "server closed idle connection") || strings.Contains(msg, "unexpected EOF")
}

// isStatus reports an HTTP status error of either client (SOAP's is unexported).
func isStatus(err error, code int) bool {
	if rest.IsStatusError(err, code) {
		return true
	}
	var he *HTTPStatus
	if errors.As(err, &he) {
		return he.Code == code
	}
	return strings.Contains(err.Error(), http.StatusText(code)) && strings.Contains(err.Error(), itoa(code))
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for n > 0 || i == len(b) {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// HTTPStatus is a transfer's unexpected HTTP status.
type HTTPStatus struct {
	Code   int
	Status string // as the response said it: "503 Service Unavailable"
}

func (e *HTTPStatus) Error() string { return e.Status }

// errTransport marks a transport failure once it has been mapped.
var errTransport = errors.New("transport error")

// TransportError is the one place transport failures (resets, refused and
// aborted connections, TLS and DNS errors, bodies cut short) are mapped: to
// an *Error of kind ErrIO that keeps the text but not the syscall errno, so
// that no ECONNRESET, ECONNABORTED or ECONNREFUSED reaches an application.
func TransportError(call, on string, err error) error {
	var be *remote.Error
	if err == nil || errors.As(err, &be) || errors.Is(err, context.Canceled) {
		return err
	}
	return &remote.Error{Call: call, On: on, Kind: remote.ErrIO, Fault: redact(err.Error()), Err: &opaque{err}}
}

// opaque hides an error's chain (its syscall errno) but says it is a
// transport failure and keeps its text.
type opaque struct{ err error }

func (o *opaque) Error() string { return o.err.Error() }

func (o *opaque) Is(target error) bool {
	switch target {
	case errTransport:
		return true
	case context.DeadlineExceeded, ErrStalled, io.ErrUnexpectedEOF:
		return errors.Is(o.err, target)
	}
	return false
}

// TransportBody maps the errors of a transfer's body through
// TransportError, so a reset mid-body is EIO with the call named.
type TransportBody struct {
	io.ReadCloser
	Call, On string
}

func (b *TransportBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = TransportError(b.Call, b.On, err)
	}
	return n, err
}

// DestroyView destroys a container view after a call, within what is left
// of the call's deadline. A call that was cancelled or ran out of time
// leaves the view to the session (views end with it, at logout): waiting
// on a hung server for a second --timeout would hold the caller twice.
func DestroyView(ctx context.Context, v *view.ContainerView) {
	if ctx.Err() == nil {
		_ = v.Destroy(ctx)
	}
}

// PutRetryable says whether a failed PUT is worth another try with the same
// bytes: a connection reset or closed early, or a gateway or server that is
// briefly unavailable. A stall is not (it already took the deadline), nor
// is a refusal.
func PutRetryable(ctx context.Context, err *remote.Error) bool {
	if ctx.Err() != nil || strings.Contains(err.Fault, ErrStalled.Error()) {
		return false
	}
	for _, s := range []string{"502 ", "503 ", "504 "} {
		if strings.HasPrefix(err.Fault, s) {
			return true
		}
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || strings.Contains(err.Fault, "connection reset") ||
		strings.Contains(err.Fault, "broken pipe") || strings.Contains(err.Fault, "EOF") ||
		strings.Contains(err.Fault, "use of closed network connection")
}
