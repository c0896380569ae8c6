// Package sim is the embedded vCenter simulator: govmomi's vcsim (with its
// vAPI endpoints) plus the fidelity extensions vspherefs relies on, so that
// tests, benchmarks and `vspherefs sim` all meet the behaviour a real vCenter has.
package sim

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/rest"

	_ "github.com/vmware/govmomi/vapi/simulator" // registers the vAPI endpoints
)

// Options configure a simulator.
type Options struct {
	Listen string        // host:port; "" or ":0" picks a free loopback port
	Login  *url.Userinfo // vCenter credentials accepted; nil means user:pass
	Demo   bool          // create the demo content

	LeaseTimeout time.Duration // export lease timeout; 0 means vCenter's 300s
	GuestLogin   *url.Userinfo // what the simulated guests accept; nil means root/vmware

	Ranges bool     // library downloads answer Range with 206 (vcsim ignores Range)
	Faults []string // transport faults to inject from the start (see Faults)
}

// Server is a running simulator.
type Server struct {
	URL        *url.URL // https://user:pass@host:port/sdk
	Thumbprint string   // SHA-1 thumbprint of the server certificate, as govc prints it

	model *simulator.Model
	srv   *simulator.Server
	mux   *http.ServeMux
	vapi  http.Handler // vcsim's vAPI handler, reached past our more specific patterns

	Library  *LibraryData // library file data endpoint (Range switch, counters)
	Prepare  *PrepareSteps
	Sessions *Sessions
	Updates  *UpdateSessions // update sessions as vCenter runs them (fault injection)
	Disks    *Disks          // every VM disk's raw content and served VMDK
	Exports  *Exports        // export leases (counters, timeout)
	Guest    *Guest          // directory-backed guests of the VMs (clock, failures, counters)
	Faults   *Faults         // transport faults injected by method and path (faults.go)

	adminC    adminClient
	closeOnce sync.Once
}

// createMu serialises vcsim's Model.Create, which writes package-level
// state (simulator.EvalLicense) and so races with another Create: tests
// start simulators in parallel.
var createMu sync.Mutex

// Start creates the inventory, starts the HTTPS server and, if asked, the demo content.
func Start(opts Options) (*Server, error) {
	model := simulator.VPX()
	createMu.Lock()
	err := model.Create()
	createMu.Unlock()
	if err != nil {
		return nil, err
	}
	login := opts.Login
	if login == nil {
		login = url.UserPassword("user", "pass")
	}
	if login == simulator.DefaultLogin {
		// vcsim compares by pointer and would accept anything: make a copy.
		p, _ := login.Password()
		login = url.UserPassword(login.Username(), p)
	}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	// vcsim panics when it cannot listen: say why in one line instead.
	if l, err := net.Listen("tcp", listen); err != nil {
		model.Remove()
		return nil, fmt.Errorf("cannot listen on %s: %w", listen, errors.Unwrap(err))
	} else {
		l.Close()
	}
	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true
	model.Service.Listen = &url.URL{Host: listen, User: login}
	mux := http.NewServeMux()
	model.Service.ServeMux = mux

	s := &Server{model: model, mux: mux, Faults: newFaults()}
	for _, f := range opts.Faults {
		if _, err := ParseFault(f); err != nil {
			model.Remove()
			return nil, err
		}
	}
	s.Library = newLibraryData(s)
	s.Library.SetRanges(opts.Ranges)
	s.Prepare = newPrepareSteps(s)
	mux.Handle(rest.Path+"/com/vmware/cis/data/", s.Faults.Wrap(s.Library))
	mux.Handle(rest.Path+"/com/vmware/content/library/item/downloadsession/file/", s.Faults.Wrap(s.Prepare))
	s.Sessions = newSessions(s)
	mux.Handle(rest.Path+"/com/vmware/cis/session", s.Faults.Wrap(s.Sessions))
	// Every SOAP call, before vcsim's "/sdk".
	mux.Handle("POST /sdk", s.Faults.Wrap(http.HandlerFunc(model.Service.ServeSDK)))
	if err := s.startExports(opts); err != nil {
		model.Remove()
		return nil, err
	}

	s.srv = model.Service.NewServer()
	s.URL = s.srv.URL
	s.vapi, _ = mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: rest.Path + "/"}})
	// Extensions that need vcsim's vAPI handler register once it exists
	// (before anything can connect: Start has not returned).
	if s.Updates, err = newUpdateSessions(s); err != nil {
		s.Close()
		return nil, err
	}
	// Every vAPI call our extensions hand on to vcsim passes the faults
	// (newUpdateSessions needed vcsim's own handler).
	s.vapi = s.Faults.Wrap(s.vapi)
	mux.Handle(rest.Path+"/com/vmware/content/", s.vapi)
	s.Updates.register(mux)
	(&LibraryChecks{s: s, vc: s.Updates.vc}).register(mux)
	cert := s.srv.Certificate()
	sum := sha1.Sum(cert.Raw)
	s.Thumbprint = thumbprint(sum[:])
	if err := s.startGuest(opts); err != nil {
		s.Close()
		return nil, fmt.Errorf("guests: %w", err)
	}

	if opts.Demo {
		if err := s.CreateDemo(context.Background()); err != nil {
			s.Close()
			return nil, fmt.Errorf("demo content: %w", err)
		}
		if err := s.createGuestDemo(context.Background()); err != nil {
			s.Close()
			return nil, fmt.Errorf("guest demo: %w", err)
		}
	}
	for _, f := range opts.Faults { // once the content is made: they are for clients
		_ = s.Faults.Add(f)
	}
	return s, nil
}

// TB is the part of testing.TB that StartT needs (kept as an interface so
// that the vspherefs binary does not link the testing package).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// StartT starts a simulator with demo content for a test and stops it at cleanup.
func StartT(t TB, opts ...Options) *Server {
	t.Helper()
	o := Options{Demo: true}
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := Start(o)
	if err != nil {
		t.Fatalf("sim.Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and removes the simulator's temporary files.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.Faults.close()
		if s.Updates != nil {
			s.Updates.close() // stalled PUTs return
		}
		if s.Guest != nil {
			s.Guest.stopStalls()
		}
		s.srv.Close()
		s.stopExports()
		if s.Guest != nil {
			s.Guest.close()
		}
		s.model.Remove()
	})
}

// Client logs in with govmomi, as an independent client for checks.
func (s *Server) Client(ctx context.Context) (*govmomi.Client, *rest.Client, error) {
	c, err := govmomi.NewClient(ctx, s.URL, true)
	if err != nil {
		return nil, nil, err
	}
	rc := rest.NewClient(c.Client)
	if err := rc.Login(ctx, s.URL.User); err != nil {
		return nil, nil, err
	}
	return c, rc, nil
}

// CertificateFile writes the server certificate to a PEM file (removed at Close).
func (s *Server) CertificateFile() (string, error) { return s.srv.CertificateFile() }

// GovcURL is the line `vspherefs sim` prints.
func (s *Server) GovcURL() string { return "GOVC_URL=" + s.URL.String() }

// Model gives tests access to the vcsim model (inventory, fault rules).
func (s *Server) Model() *simulator.Model { return s.model }

// Mux is the server's ServeMux, for extensions registered by other files.
func (s *Server) Mux() *http.ServeMux { return s.mux }

func thumbprint(b []byte) string {
	h := make([]string, len(b))
	for i, c := range b {
		h[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(h, ":")
}
