package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vspherefs/vspherefs/remote"
)

// ErrStalled is why a stalled transfer was cancelled.
var ErrStalled = remote.ErrStalled

// StallGuard ends a transfer that makes no progress for a while: a body can
// take hours, so it has no overall deadline, but a stalled one must not hang
// a reader (and the cache's stream) forever.
type StallGuard struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration
	call   string
	on     string
	once   sync.Once
}

// NewStallGuard returns a guard whose Context is cancelled when no byte
// arrives for idle, from now (the wait for the response headers counts too).
func NewStallGuard(ctx context.Context, idle time.Duration, call, on string) *StallGuard {
	g := &StallGuard{idle: idle, call: call, on: on}
	g.ctx, g.cancel = context.WithCancelCause(ctx)
	g.timer = time.AfterFunc(idle, func() { g.cancel(ErrStalled) })
	return g
}

// Context is the request's context.
func (g *StallGuard) Context() context.Context { return g.ctx }

// Err turns the error of a cancelled request into a stall error.
func (g *StallGuard) Err(err error) error {
	if err != nil && errors.Is(context.Cause(g.ctx), ErrStalled) {
		return &remote.Error{Call: g.call, On: g.on, Kind: remote.ErrIO, Err: ErrStalled, Fault: fmt.Sprintf("%v for %s (--timeout)", ErrStalled, g.idle)}
	}
	return err
}

// Wrap guards a response body.
func (g *StallGuard) Wrap(body io.ReadCloser) io.ReadCloser {
	g.ReadCloser = body
	return g
}

func (g *StallGuard) Read(p []byte) (int, error) {
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
func (g *StallGuard) Stop() {
	g.once.Do(func() { g.timer.Stop(); g.cancel(nil) })
}

func (g *StallGuard) Close() error {
	err := g.ReadCloser.Close()
	g.Stop()
	return err
}
