package metrics

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vspherefs/vspherefs/status"
)

// Transport wraps the connection's HTTP transport (backend.Observer): API
// calls pass through (Call counts them), transfers are tracked and counted.
func (m *Metrics) Transport(rt http.RoundTripper) http.RoundTripper {
	return &transport{m: m, next: rt}
}

type transport struct {
	m    *Metrics
	next http.RoundTripper
}

// kindOf says which tree a transfer URL belongs to, or "" for an API call.
func kindOf(r *http.Request) (tree, kind string) {
	p := r.URL.Path
	switch {
	case p == "/sdk" || strings.HasPrefix(p, "/sdk/"):
		return "", ""
	case strings.Contains(p, "/guestFile"):
		return "vms", "guest"
	case strings.Contains(p, "/nfc/"):
		return "exports", "export disk"
	case strings.Contains(p, "/data/"): // library file data (/cls/data/…, /rest/com/vmware/cis/data/…)
		return "libraries", "library"
	case strings.HasPrefix(p, "/rest/") || strings.HasPrefix(p, "/api/"):
		return "", ""
	}
	return "other", "transfer"
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	tree, kind := kindOf(r)
	if tree == "" {
		if r.URL.Path != "/sdk" {
			return t.next.RoundTrip(r)
		}
		r, method := sniffSOAP(r)
		res, err := t.next.RoundTrip(r)
		t.m.soapCall(method, res, err)
		return res, err
	}
	dir, verb := "read", "download"
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		dir, verb = "written", "upload"
	}
	host, path := r.URL.Host, r.URL.Path // never the query: it holds tokens
	total := int64(-1)
	if dir == "written" && r.ContentLength > 0 {
		total = r.ContentLength
	}
	state := "waiting for server"
	if dir == "written" {
		state = "streaming"
	}
	origin := status.Origin(r.Context()) // the path in the mount it is for, if the fs said
	live := t.m.Tracker.BeginAt(origin, kind+" "+verb, host, path, state, total)
	g := t.m.transfers.WithLabelValues(tree, dir)
	g.Inc()
	bytes := t.m.transferBytes.WithLabelValues(tree, dir)
	start := time.Now()
	var once sync.Once
	end := func(status string) {
		once.Do(func() {
			live.End()
			g.Dec()
			t.m.transferSeconds.WithLabelValues(tree, dir).Observe(time.Since(start).Seconds())
			if t.m.Debug {
				t.m.Log.Debug("transfer", "kind", kind, "file", origin, "method", r.Method, "host", host, "path", path,
					"status", status, "bytes", live.Done(), "took", time.Since(start).Round(time.Microsecond))
			}
		})
	}
	if t.m.Debug {
		t.m.Log.Debug("transfer start", "kind", kind, "file", origin, "method", r.Method, "host", host, "path", path)
	}
	if dir == "written" && r.Body != nil && r.Body != http.NoBody {
		r2 := *r
		r2.Body = &countUpload{countBody{ReadCloser: r.Body, live: live, bytes: bytes.Add}}
		r = &r2
	}
	res, err := t.next.RoundTrip(r)
	if err != nil {
		end("error")
		return nil, err
	}
	if dir == "read" {
		if res.ContentLength >= 0 {
			live.SetTotal(res.ContentLength)
		}
		live.SetState("streaming")
		res.Body = &countBody{ReadCloser: res.Body, live: live, bytes: bytes.Add, end: func() { end(strconv.Itoa(res.StatusCode)) }}
		return res, nil
	}
	// An upload's body has gone; the response body is small: it ends with it.
	live.SetState("server answered")
	res.Body = &countBody{ReadCloser: res.Body, end: func() { end(strconv.Itoa(res.StatusCode)) }}
	return res, nil
}

// Step lists a step that moves no bytes of its own (a library file's
// prepare, a commit, an export's lease) with the transfers, for path in the
// mount (backend.StepObserver).
func (m *Metrics) Step(kind, path, state string) *status.Live {
	return m.Tracker.BeginAt(path, kind, "", "", state, -1)
}

// countBody counts the bytes read through it and ends the transfer at EOF or Close.
type countBody struct {
	io.ReadCloser
	live  interface{ Add(int64) }
	bytes func(float64)
	end   func()
}

func (b *countBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 && b.live != nil {
		b.live.Add(int64(n))
		b.bytes(float64(n))
	}
	if err == io.EOF && b.end != nil {
		b.end()
	}
	return n, err
}

func (b *countBody) Close() error {
	err := b.ReadCloser.Close()
	if b.end != nil {
		b.end()
	}
	return err
}

// countUpload is an upload's body: net/http copies a body with io.Copy,
// 32 KiB at a time unless the body is an io.WriterTo; a chunked (streamed)
// body then becomes one chunk, and one flush, per 32 KiB. WriteTo hands
// the transport what each read gives, up to 1 MiB.
type countUpload struct{ countBody }

func (b *countUpload) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := b.ReadCloser.(io.WriterTo); ok {
		// A body that writes itself (a streamed upload's ring) is counted
		// on its way out, without a copy through buf.
		return wt.WriteTo(countWriter{w, b})
	}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := b.Read(buf)
		if k > 0 {
			m, werr := w.Write(buf[:k])
			n += int64(m)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// countWriter counts what a body that writes itself gives the transport.
type countWriter struct {
	w io.Writer
	b *countUpload
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if n > 0 && c.b.live != nil {
		c.b.live.Add(int64(n))
		c.b.bytes(float64(n))
	}
	return n, err
}

func strconvF(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
