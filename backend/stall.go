package backend

import (
	"context"
	"errors"
	"fmt"
	"github.com/vspherefs/vspherefs/remote"
	"io"
	"sync"
	"time"
)

// errStalled is why a stalled transfer was cancelled.
var errStalled = errors.New("no data received")

// stallGuard ends a transfer that makes no progress for a while: a body can
// take hours, so it has no overall deadline, but a stalled one must not hang
// a reader (and the cache's stream) forever.
type stallGuard struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration
	call   string
	on     string
	once   sync.Once
}

// newStallGuard returns a guard whose Context is cancelled when no byte
// arrives for idle, from now (the wait for the response headers counts too).
func newStallGuard(ctx context.Context, idle time.Duration, call, on string) *stallGuard {
	g := &stallGuard{idle: idle, call: call, on: on}
	g.ctx, g.cancel = context.WithCancelCause(ctx)
	g.timer = time.AfterFunc(idle, func() { g.cancel(errStalled) })
	return g
}

// Context is the request's context.
func (g *stallGuard) Context() context.Context { return g.ctx }

// Err turns the error of a cancelled request into a stall error.
func (g *stallGuard) Err(err error) error {
	if err != nil && errors.Is(context.Cause(g.ctx), errStalled) {
		return &remote.Error{Call: g.call, On: g.on, Kind: remote.ErrIO, Err: errStalled, Fault: fmt.Sprintf("%v for %s (--timeout)", errStalled, g.idle)}
	}
	return err
}

// Wrap guards a response body.
func (g *stallGuard) Wrap(body io.ReadCloser) io.ReadCloser {
	g.ReadCloser = body
	return g
}

func (g *stallGuard) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	if n > 0 {
		g.timer.Reset(g.idle)
	}
	if err != nil && err != io.EOF {
		err = g.Err(err)
	}
	return n, err
}

// Stop releases the guard (when the request failed or its body is closed).
func (g *stallGuard) Stop() {
	g.once.Do(func() { g.timer.Stop(); g.cancel(nil) })
}

func (g *stallGuard) Close() error {
	err := g.ReadCloser.Close()
	g.Stop()
	return err
}
