package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Faults injects transport faults into the simulator's HTTP handlers, by
// method and path pattern, as a network or an overloaded vCenter would:
//
//	503         answer 503 Service Unavailable
//	stall-after:SIZE
//	            send the headers and SIZE bytes of the body, then nothing
//	            until the client gives up ("stall" is stall-after:0)
//	reset-after:SIZE
//	            send SIZE bytes of the body, then reset the connection (RST)
//	            ("reset" is reset-after:0)
//	hang        read the request and never answer (a server that stops answering)
//	refuse      reset the connection before any answer (as a refused connection
//	            looks to a client that already has one open)
//
// A rule is written [METHOD ]PATTERN[#CALL]=ACTION[xN]: PATTERN is matched
// against the path and query, '*' standing for any run of characters; CALL
// names a SOAP method, matched in the request body (POST /sdk#ListFilesInGuest);
// xN applies the fault to the first N matching requests only, then lets them
// through. Examples:
//
//	GET /guestFile*=stall-after:1MiB
//	GET /rest/com/vmware/cis/data/*=503x3
//	POST /sdk#InitiateFileTransferFromGuest=503x2
//	GET /nfc/*=reset-after:512KiB x1
type Faults struct {
	mu    sync.Mutex
	rules []*FaultRule
	stop  chan struct{}
	once  sync.Once

	waiting atomic.Int64 // requests held by a stall or hang now
}

// Waiting is how many requests a stall or hang holds now: 0 once every
// client has given up on them.
func (f *Faults) Waiting() int64 { return f.waiting.Load() }

// FaultRule is one parsed rule.
type FaultRule struct {
	Spec    string
	Method  string // "" for any
	Pattern string
	Call    string // SOAP method, "" for any
	Action  string // 503, stall, reset, hang, refuse
	After   int64  // body bytes before a stall or reset
	Times   int    // requests to fault; 0: every one

	hits int // requests faulted so far
}

func newFaults() *Faults { return &Faults{stop: make(chan struct{})} }

// Add parses and adds a rule.
func (f *Faults) Add(spec string) error {
	r, err := ParseFault(spec)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	return nil
}

// Clear removes every rule.
func (f *Faults) Clear() {
	f.mu.Lock()
	f.rules = nil
	f.mu.Unlock()
}

// Hits is how many requests the rule spec has faulted.
func (f *Faults) Hits(spec string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.rules {
		if r.Spec == spec {
			n += r.hits
		}
	}
	return n
}

func (f *Faults) close() { f.once.Do(func() { close(f.stop) }) }

// ParseFault parses one rule (see Faults).
func ParseFault(spec string) (*FaultRule, error) {
	target, action, ok := strings.Cut(spec, "=")
	if !ok {
		return nil, fmt.Errorf("fault %q: want [METHOD ]PATTERN[#CALL]=ACTION[xN]", spec)
	}
	r := &FaultRule{Spec: spec}
	target = strings.TrimSpace(target)
	if m, p, ok := strings.Cut(target, " "); ok {
		r.Method, target = strings.ToUpper(m), strings.TrimSpace(p)
	}
	r.Pattern, r.Call, _ = strings.Cut(target, "#")
	if r.Pattern == "" || !strings.HasPrefix(r.Pattern, "/") && r.Pattern != "*" {
		return nil, fmt.Errorf("fault %q: the pattern must start with /", spec)
	}
	action = strings.TrimSpace(action)
	if i := strings.LastIndex(action, "x"); i > 0 {
		if n, err := strconv.Atoi(strings.TrimSpace(action[i+1:])); err == nil {
			if n <= 0 {
				return nil, fmt.Errorf("fault %q: xN needs N > 0", spec)
			}
			r.Times, action = n, strings.TrimSpace(action[:i])
		}
	}
	name, arg, hasArg := strings.Cut(action, ":")
	switch name {
	case "503", "hang", "refuse":
		if hasArg {
			return nil, fmt.Errorf("fault %q: %s takes no size", spec, name)
		}
		r.Action = name
	case "stall", "stall-after", "reset", "reset-after":
		r.Action = strings.TrimSuffix(name, "-after")
		if hasArg != strings.HasSuffix(name, "-after") {
			return nil, fmt.Errorf("fault %q: write %s-after:SIZE, or %s alone", spec, r.Action, r.Action)
		}
		if hasArg {
			n, err := parseSize(arg)
			if err != nil {
				return nil, fmt.Errorf("fault %q: %v", spec, err)
			}
			r.After = n
		}
	default:
		return nil, fmt.Errorf("fault %q: unknown action %q (503, stall-after:SIZE, reset-after:SIZE, hang, refuse)", spec, action)
	}
	return r, nil
}

// parseSize reads 123, 64KiB, 1MiB, 2GiB (or k, M, G).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"k", 1 << 10}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// glob matches s against a pattern where '*' is any run of characters.
func glob(pattern, s string) bool {
	if pattern == "*" {
		return true
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := len(parts) - 1
	for i := 1; i < last; i++ {
		j := strings.Index(s, parts[i])
		if j < 0 {
			return false
		}
		s = s[j+len(parts[i]):]
	}
	if last == 0 {
		return s == ""
	}
	return strings.HasSuffix(s, parts[last])
}

// match returns the rule a request falls under, counting the hit.
func (f *Faults) match(r *http.Request) *FaultRule {
	f.mu.Lock()
	needBody := false
	for _, rule := range f.rules {
		needBody = needBody || rule.Call != ""
	}
	empty := len(f.rules) == 0
	f.mu.Unlock()
	if empty {
		return nil
	}
	var body []byte
	if needBody { // read before locking: no lock across network I/O
		body, _ = io.ReadAll(io.LimitReader(r.Body, 4<<20))
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body} // what is past the limit too
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	target := r.URL.Path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	for _, rule := range f.rules {
		if rule.Times > 0 && rule.hits >= rule.Times {
			continue
		}
		if rule.Method != "" && rule.Method != "*" && rule.Method != r.Method {
			continue
		}
		if !glob(rule.Pattern, r.URL.Path) && !glob(rule.Pattern, target) {
			continue
		}
		if rule.Call != "" {
			if !bytes.Contains(body, []byte("<"+rule.Call+">")) && !bytes.Contains(body, []byte("<"+rule.Call+" ")) {
				continue
			}
		}
		rule.hits++
		return rule
	}
	return nil
}

type faultSeen struct{}

// Wrap puts the faults in front of h. A request passes through once: a
// handler that hands it on to another wrapped handler is not faulted twice,
// and the simulator's in-process calls (to a recorder) never are.
func (f *Faults) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, inproc := w.(*httptest.ResponseRecorder); inproc || r.Context().Value(faultSeen{}) != nil {
			h.ServeHTTP(w, r)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), faultSeen{}, true))
		rule := f.match(r)
		if rule == nil {
			h.ServeHTTP(w, r)
			return
		}
		switch rule.Action {
		case "503":
			w.Header().Set("Retry-After", "1")
			http.Error(w, "Service Unavailable (injected)", http.StatusServiceUnavailable)
		case "hang":
			_, _ = io.Copy(io.Discard, r.Body)
			f.wait(r)
			panic(http.ErrAbortHandler)
		case "refuse":
			resetConn(w)
		case "stall", "reset":
			cw := &cutWriter{ResponseWriter: w, f: f, r: r, rule: rule}
			h.ServeHTTP(cw, r)
			if !cw.cut && rule.After == 0 {
				// Nothing was written (an empty body): cut it here.
				cw.cutNow()
			}
			if cw.cut {
				panic(http.ErrAbortHandler) // never a clean end
			}
		}
	})
}

// wait blocks until the client goes away or the simulator closes.
func (f *Faults) wait(r *http.Request) {
	f.waiting.Add(1)
	defer f.waiting.Add(-1)
	select {
	case <-r.Context().Done():
	case <-f.stop:
	}
}

var errInjected = errors.New("injected fault")

// cutWriter passes After bytes of the body, then stalls or resets.
type cutWriter struct {
	http.ResponseWriter
	f       *Faults
	r       *http.Request
	rule    *FaultRule
	written int64
	cut     bool
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.cut {
		return 0, errInjected
	}
	room := c.rule.After - c.written
	if int64(len(p)) <= room {
		n, err := c.ResponseWriter.Write(p)
		c.written += int64(n)
		return n, err
	}
	n := 0
	if room > 0 {
		var err error
		n, err = c.ResponseWriter.Write(p[:room])
		c.written += int64(n)
		if err != nil {
			return n, err
		}
	}
	c.cutNow()
	return n, errInjected
}

func (c *cutWriter) cutNow() {
	c.cut = true
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if c.rule.Action == "reset" {
		resetConn(c.ResponseWriter)
		return
	}
	c.f.wait(c.r)
}

func (c *cutWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok && !c.cut {
		f.Flush()
	}
}

// resetConn closes the request's connection with a TCP reset.
func resetConn(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}
