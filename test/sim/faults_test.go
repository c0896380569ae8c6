package sim

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	for _, c := range []struct {
		spec   string
		ok     bool
		method string
		action string
		after  int64
		times  int
		call   string
	}{
		{"GET /guestFile*=stall-after:1MiB", true, "GET", "stall", 1 << 20, 0, ""},
		{"/rest/*=503x3", true, "", "503", 0, 3, ""},
		{"POST /sdk#InitiateFileTransferFromGuest=503x2", true, "POST", "503", 0, 2, "InitiateFileTransferFromGuest"},
		{"GET /nfc/*=reset-after:512KiB x1", true, "GET", "reset", 512 << 10, 1, ""},
		{"* /sdk=hang", true, "*", "hang", 0, 0, ""},
		{"GET /x=refuse", true, "GET", "refuse", 0, 0, ""},
		{"GET /x=stall", true, "GET", "stall", 0, 0, ""},
		{"GET /x=bogus", false, "", "", 0, 0, ""},
		{"GET x=503", false, "", "", 0, 0, ""},
		{"GET /x", false, "", "", 0, 0, ""},
		{"GET /x=503x0", false, "", "", 0, 0, ""},
		{"GET /x=stall-after:lots", false, "", "", 0, 0, ""},
		{"GET /x=hang:1", false, "", "", 0, 0, ""},
	} {
		r, err := ParseFault(c.spec)
		if (err == nil) != c.ok {
			t.Errorf("%q: %v", c.spec, err)
			continue
		}
		if err == nil && (r.Method != c.method || r.Action != c.action || r.After != c.after || r.Times != c.times || r.Call != c.call) {
			t.Errorf("%q: %+v", c.spec, r)
		}
	}
	for p, s := range map[string]string{"/a/*": "/a/b/c", "*": "/x", "/a*c": "/abbbc", "/guestFile*": "/guestFile?id=1"} {
		if !glob(p, s) {
			t.Errorf("glob(%q, %q) false", p, s)
		}
	}
	if glob("/a", "/ab") || glob("/a*c", "/abd") {
		t.Error("glob matches too much")
	}
}

// TestFaultsOnTheWire: each action as a plain HTTP client sees it.
func TestFaultsOnTheWire(t *testing.T) {
	f := newFaults()
	defer f.close()
	body := strings.Repeat("x", 1<<20)
	srv := httptest.NewServer(f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	})))
	defer srv.Close()
	get := func() (int, int, error) {
		c := &http.Client{Timeout: 2 * time.Second}
		res, err := c.Get(srv.URL + "/data")
		if err != nil {
			return 0, 0, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, len(b), err
	}
	if err := f.Add("GET /data=503x2"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if code, _, _ := get(); code != 503 {
			t.Fatalf("try %d: %d, want 503", i, code)
		}
	}
	if code, n, err := get(); code != 200 || n != len(body) || err != nil {
		t.Fatalf("after 503x2: %d %d %v", code, n, err)
	}
	f.Clear()
	f.Add("GET /data=reset-after:1000")
	if _, n, err := get(); !errors.Is(err, syscall.ECONNRESET) || n != 1000 {
		t.Fatalf("reset-after:1000: %d bytes, %v", n, err)
	}
	f.Clear()
	f.Add("GET /data=stall-after:2000")
	start := time.Now()
	if _, n, err := get(); err == nil || n != 2000 || time.Since(start) < time.Second {
		t.Fatalf("stall-after:2000: %d bytes, %v after %v", n, err, time.Since(start))
	}
	f.Clear()
	f.Add("GET /data=refuse")
	if _, _, err := get(); err == nil {
		t.Fatal("refuse: no error")
	}
	f.Clear()
	f.Add("GET /data=hang")
	if _, _, err := get(); err == nil {
		t.Fatal("hang: no error")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Waiting() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.Waiting() != 0 {
		t.Fatal("a hang outlived its client")
	}
}
