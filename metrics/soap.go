package metrics

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
)

// leaseCalls are the SOAP methods that take (+1) and give back (-1) an
// export lease. The export code calls them through the SOAP client, not
// through Conn.Do, so they are recognised here, in the request body.
var leaseCalls = map[string]int64{
	"ExportVm": 1, "ExportSnapshot": 1, "ExportVApp": 1,
	"HttpNfcLeaseComplete": -1, "HttpNfcLeaseAbort": -1,
}

var soapMethod = regexp.MustCompile(`<(?:[A-Za-z0-9_]+:)?Body[^>]*>\s*<(?:[A-Za-z0-9_]+:)?([A-Za-z0-9_]+)`)

// sniffSOAP returns the method of a SOAP request, leaving its body as it was.
func sniffSOAP(r *http.Request) (*http.Request, string) {
	if r.Body == nil || r.Body == http.NoBody || r.Method != http.MethodPost {
		return r, ""
	}
	// Read until the body's first element shows, 64 KiB at most.
	var head []byte
	var m [][]byte
	buf := make([]byte, 4096)
	var err error
	for len(head) < 64<<10 && m == nil && err == nil {
		var n int
		n, err = io.ReadFull(r.Body, buf)
		head = append(head, buf[:n]...)
		m = soapMethod.FindSubmatch(head)
	}
	r2 := *r
	rest := io.Reader(r.Body)
	switch err {
	case nil:
	case io.EOF, io.ErrUnexpectedEOF: // all of it was read
		rest = bytes.NewReader(nil)
	default: // the sender sees the body's error, as without us
		rest = errReader{err}
	}
	r2.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), rest), r.Body}
	if m == nil {
		return &r2, ""
	}
	return &r2, string(m[1])
}

// soapCall counts a lease taken or given back, once the server has answered 200.
func (m *Metrics) soapCall(method string, res *http.Response, err error) {
	d, ok := leaseCalls[method]
	if !ok || err != nil || res.StatusCode != http.StatusOK {
		return
	}
	m.mu.Lock()
	m.open["lease"] = max(0, m.open["lease"]+d)
	m.sessions.WithLabelValues("lease").Set(float64(m.open["lease"]))
	m.mu.Unlock()
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
