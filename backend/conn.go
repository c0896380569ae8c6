package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/remote"
)

// Config says where and how to connect.
type Config struct {
	URL        *url.URL      // vCenter URL, without credentials
	User       *url.Userinfo // vCenter login
	Insecure   bool          // skip TLS verification (explicit --insecure)
	CACerts    string        // PEM file(s) of CAs to trust
	Thumbprint string        // pin the server certificate by SHA-1 thumbprint
	Timeout    time.Duration // deadline of each API call
	KeepAlive  time.Duration // session keep-alive interval
	Log        *slog.Logger
	Debug      bool // log every API call (never secrets)

	Observer Observer // status and metrics (observe.go); nil: none
}

// Conn is a logged-in vCenter connection (SOAP and REST), kept alive, and
// re-established once, transparently, when the server says NotAuthenticated.
type Conn struct {
	Config Config
	SOAP   *soap.Client

	mu   sync.RWMutex
	vim  *vim25.Client
	rest *rest.Client
	lib  *library.Manager
	gen  int // login generation, so concurrent failures re-login once

	stop chan struct{}
	wg   sync.WaitGroup
}

// Dial connects and logs in.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 5 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	u := *cfg.URL
	u.User = nil
	if u.Path == "" || u.Path == "/" {
		u.Path = "/sdk"
	}
	sc := soap.NewClient(&u, cfg.Insecure)
	if cfg.CACerts != "" {
		if err := sc.SetRootCAs(cfg.CACerts); err != nil {
			return nil, fmt.Errorf("--ca-certs: %w", err)
		}
	}
	if cfg.Thumbprint != "" {
		sc.SetThumbprint(u.Host, cfg.Thumbprint)
	}
	if t, ok := sc.Client.Transport.(*http.Transport); ok {
		// Listings run 8 calls at once and reads fetch ranges in parallel:
		// keep those connections instead of a TLS handshake per call.
		t.MaxIdleConnsPerHost = 32
		t.DialTLSContext = tlsDialer{sc: sc, timeout: cfg.Timeout}.dial
	}
	if cfg.Observer != nil {
		sc.Client.Transport = cfg.Observer.Transport(sc.Client.Transport)
	}
	c := &Conn{Config: cfg, SOAP: sc, stop: make(chan struct{})}
	if err := c.login(ctx); err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go c.keepAlive()
	return c, nil
}

func (c *Conn) login(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.Config.Timeout)
	defer cancel()
	vc, err := vim25.NewClient(ctx, c.SOAP)
	if err != nil {
		return c.Classify("ServiceContent", c.Config.URL.Host, tlsHint(c.Config.URL.Host, err))
	}
	if err := session.NewManager(vc).Login(ctx, c.Config.User); err != nil {
		return c.Classify("Login", c.Config.URL.Host, err)
	}
	rc := rest.NewClient(vc)
	if c.Config.Observer != nil { // library uploads go through the vAPI client
		rc.Client.Client.Transport = c.Config.Observer.Transport(rc.Client.Client.Transport)
	}
	if err := rc.Login(ctx, c.Config.User); err != nil {
		return c.Classify("cis/session:create", c.Config.URL.Host, err)
	}
	c.mu.Lock()
	c.vim, c.rest, c.lib = vc, rc, library.NewManager(rc)
	c.gen++
	c.mu.Unlock()
	return nil
}

// relogin logs in again unless another caller already did since gen.
func (c *Conn) relogin(ctx context.Context, gen int) error {
	c.mu.RLock()
	cur := c.gen
	c.mu.RUnlock()
	if cur != gen {
		return nil
	}
	c.Config.Log.Warn("session lost, logging in again", "server", c.Config.URL.Host)
	return c.login(ctx)
}

func (c *Conn) keepAlive() {
	defer c.wg.Done()
	t := time.NewTicker(c.Config.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			_ = c.Do(context.Background(), "SessionIsActive", "", func(ctx context.Context) error {
				if _, err := c.REST().Session(ctx); err != nil {
					return err
				}
				_, err := session.NewManager(c.Vim()).UserSession(ctx)
				return err
			})
		}
	}
}

// Close logs out and stops the keep-alive.
func (c *Conn) Close(ctx context.Context) {
	close(c.stop)
	c.wg.Wait()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = c.REST().Logout(ctx)
	_ = session.NewManager(c.Vim()).Logout(ctx)
}

// Vim is the SOAP client.
func (c *Conn) Vim() *vim25.Client {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.vim
}

// REST is the vAPI client.
func (c *Conn) REST() *rest.Client {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rest
}

// Library is the content library manager.
func (c *Conn) Library() *library.Manager {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.lib
}

// HTTP is the HTTP client for transfers, with the connection's TLS settings.
func (c *Conn) HTTP() *http.Client { return &c.SOAP.Client }

// Log is the connection's logger.
func (c *Conn) Log() *slog.Logger { return c.Config.Log }

// Do runs one API call with the one deadline (--timeout) for the call and
// all its retries: it logs in again once if the session was lost, retries
// what is safe to retry (retry.go) with capped exponential backoff and
// jitter, logs each try when debugging, and returns failures as *Error.
func (c *Conn) Do(ctx context.Context, call, on string, fn func(ctx context.Context) error) error {
	dctx, cancel := context.WithTimeout(ctx, c.Config.Timeout)
	defer cancel()
	relogged := false
	for attempt := 0; ; attempt++ {
		c.mu.RLock()
		gen := c.gen
		c.mu.RUnlock()
		start := time.Now()
		err := fn(dctx)
		if c.Config.Observer != nil {
			c.Config.Observer.Call(call, time.Since(start), err)
		}
		if c.Config.Debug {
			c.Config.Log.Debug("api", "call", call, "on", on, "try", attempt+1, "took", time.Since(start).Round(time.Microsecond), "err", ErrText(err))
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return c.Classify(call, on, err) // interrupted: EINTR
		}
		if !relogged && isNotAuthenticated(err) && dctx.Err() == nil {
			relogged = true
			if lerr := c.relogin(dctx, gen); lerr != nil {
				return c.deadline(call, on, lerr, dctx)
			}
			continue
		}
		if dctx.Err() == nil && retryable(call, err) {
			if SleepCtx(dctx, Backoff(attempt)) == nil {
				c.NoteRetry(call)
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err() // interrupted while waiting to retry: EINTR, not the last try's fault
			}
		}
		return c.deadline(call, on, err, dctx)
	}
}

// deadline classifies a failure, saying so when the one deadline ran out.
func (c *Conn) deadline(call, on string, err error, dctx context.Context) error {
	if dctx.Err() != nil && !errors.Is(err, context.Canceled) {
		var be *remote.Error
		if errors.As(err, &be) && be.Kind != remote.ErrIO {
			return err
		}
		return &remote.Error{Call: call, On: on, Kind: remote.ErrIO, Err: &opaque{err},
			Fault: fmt.Sprintf("no answer within --timeout %s (%s)", c.Config.Timeout, redact(err.Error()))}
	}
	return c.Classify(call, on, err)
}

// WithLogin runs a long call (a task, an export) with the SOAP client and no
// deadline of its own, logging in again once if the session was lost.
func (c *Conn) WithLogin(ctx context.Context, fn func(vc *vim25.Client) error) error {
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	err := fn(c.Vim())
	if err != nil && isNotAuthenticated(err) && ctx.Err() == nil {
		if lerr := c.relogin(ctx, gen); lerr != nil {
			return lerr
		}
		err = fn(c.Vim())
	}
	return err
}

func ErrText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func isNotAuthenticated(err error) bool {
	return rest.IsStatusError(err, http.StatusUnauthorized) || fault.Is(err, &types.NotAuthenticated{})
}

// Classify turns an API error into an *Error of the right kind.
func (c *Conn) Classify(call, on string, err error) error {
	var be *remote.Error
	if errors.As(err, &be) {
		return err
	}
	kind := remote.ErrIO
	switch {
	case errors.Is(err, context.Canceled):
		return err // the reader was interrupted: fs answers EINTR
	case errors.Is(err, context.DeadlineExceeded):
		kind = remote.ErrIO
	case rest.IsStatusError(err, http.StatusNotFound):
		kind = remote.ErrNotFound
	case rest.IsStatusError(err, http.StatusUnauthorized), rest.IsStatusError(err, http.StatusForbidden):
		kind = remote.ErrPermission
	case soap.IsSoapFault(err) || soap.IsVimFault(err):
		kind = faultKind(err)
	default:
		kind = vapiKind(err.Error())
	}
	return NewError(call, on, kind, err)
}

// faultKind maps a SOAP fault to an error kind, through the one table.
func faultKind(err any) error {
	for _, m := range faultTable {
		if fault.Is(err, m.fault) {
			return m.kind
		}
	}
	return remote.ErrIO
}

var vapiType = regexp.MustCompile(`com\.vmware\.vapi\.std\.errors\.([a-z_]+)`)

// vapiKind maps a vAPI error (its text names the standard error type) to a kind.
func vapiKind(msg string) error {
	// The /rest error body names its type: match that alone when present,
	// as the message text may hold any words ("unsupported checksum …").
	if m := vapiType.FindStringSubmatch(msg); m != nil {
		msg = m[1]
	}
	switch {
	case strings.Contains(msg, "not_found"), strings.Contains(msg, "404 Not Found"):
		return remote.ErrNotFound
	case strings.Contains(msg, "already_exists"):
		return remote.ErrExists
	case strings.Contains(msg, "unauthorized"), strings.Contains(msg, "unauthenticated"):
		return remote.ErrPermission
	case strings.Contains(msg, "resource_busy"), strings.Contains(msg, "resource_in_use"), strings.Contains(msg, "not_allowed_in_current_state"), strings.Contains(msg, "concurrent_change"):
		return remote.ErrBusy
	case strings.Contains(msg, "unsupported"):
		return remote.ErrUnsupported
	case strings.Contains(msg, "invalid_argument"):
		return remote.ErrInvalid
	}
	return remote.ErrIO
}

// CallTimeout is the deadline of each API call (--timeout): uploads use it
// as their progress deadline.
func (c *Conn) CallTimeout() time.Duration { return c.Config.Timeout }
