package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/vspherefs/vspherefs/status"
)

func TestKindOf(t *testing.T) {
	for _, c := range []struct{ url, tree string }{
		{"https://vc/sdk", ""},
		{"https://vc/rest/com/vmware/content/library", ""},
		{"https://vc/api/session", ""},
		{"https://vc/cls/data/5b0f/file.iso", "libraries"},
		{"https://vc/rest/com/vmware/cis/data/5b0f/f", "libraries"},
		{"https://esx1:443/guestFile?id=1&token=x", "vms"},
		{"https://esx1/nfc/52ab/disk-0.vmdk", "exports"},
	} {
		r := httptest.NewRequest(http.MethodGet, c.url, nil)
		if tree, _ := kindOf(r); tree != c.tree {
			t.Errorf("%s: tree %q, want %q", c.url, tree, c.tree)
		}
	}
}

// A transfer is tracked while its body is read, counted, and never shows its query.
func TestTransportCounts(t *testing.T) {
	body := strings.Repeat("x", 5000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5000")
		io.WriteString(w, body)
	}))
	defer srv.Close()
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	c := &http.Client{Transport: m.Transport(http.DefaultTransport)}
	res, err := c.Get(srv.URL + "/guestFile?id=1&token=secret")
	if err != nil {
		t.Fatal(err)
	}
	ts := m.Tracker.Snapshot()
	if len(ts) != 1 || ts[0].Path != "/guestFile" || ts[0].Kind != "guest download" || ts[0].Total != 5000 {
		t.Fatalf("in flight: %+v", ts)
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if n := len(m.Tracker.Snapshot()); n != 0 {
		t.Errorf("%d transfers left after the body", n)
	}
	var d dto.Metric
	if err := m.transferBytes.WithLabelValues("vms", "read").Write(&d); err != nil {
		t.Fatal(err)
	}
	if v := d.GetCounter().GetValue(); v != 5000 {
		t.Errorf("bytes read %v, want 5000", v)
	}
}

// Export leases are counted from the SOAP calls that take and give them back,
// and the request reaches the server whole.
func TestLeasesFromSOAP(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, string(b))
	}))
	defer srv.Close()
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	c := &http.Client{Transport: m.Transport(http.DefaultTransport)}
	env := func(method string) string {
		return `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="x"><soapenv:Header><op>` + strings.Repeat("h", 5000) +
			`</op></soapenv:Header><soapenv:Body><` + method + ` xmlns="urn:vim25"><_this>x</_this></` + method + `></soapenv:Body></soapenv:Envelope>`
	}
	post := func(method string) {
		t.Helper()
		res, err := c.Post(srv.URL+"/sdk", "text/xml", strings.NewReader(env(method)))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	lease := func() int64 { _, _, s := m.Counts(); return s["lease"] }
	post("ExportSnapshot")
	if lease() != 1 {
		t.Errorf("after ExportSnapshot: %d leases", lease())
	}
	post("RetrieveProperties")
	post("HttpNfcLeaseComplete")
	if lease() != 0 {
		t.Errorf("after HttpNfcLeaseComplete: %d leases", lease())
	}
	if len(got) != 3 || got[0] != env("ExportSnapshot") || got[2] != env("HttpNfcLeaseComplete") {
		t.Errorf("the server got other bodies than were sent")
	}
}

// A transfer whose request carries the origin of a mount path is shown by
// it, with its host and URL path (never the query) besides.
func TestTransportShowsOrigin(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer srv.Close()
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	c := &http.Client{Transport: m.Transport(http.DefaultTransport)}
	req, _ := http.NewRequestWithContext(status.WithOrigin(context.Background(), "vms/demo-vm/etc/hostname"),
		http.MethodGet, srv.URL+"/guestFile?id=1&token=secret", nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	ts := m.Tracker.Snapshot()
	if len(ts) != 1 || ts[0].Path != "vms/demo-vm/etc/hostname" || ts[0].URLPath != "/guestFile" || ts[0].Host != req.URL.Host {
		t.Fatalf("in flight: %+v", ts)
	}
	step := m.Step("library commit", "libraries/l/i", "committing")
	if ts := m.Tracker.Snapshot(); len(ts) != 2 || ts[1].Path != "libraries/l/i" || ts[1].State != "committing" || ts[1].Kind != "library commit" {
		t.Errorf("with a step: %+v", ts)
	}
	step.End()
}
