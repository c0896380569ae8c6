package backend

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/soap"
)

func dialClient(t *testing.T, srv *httptest.Server, thumbprint string) (*http.Client, string) {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	sc := soap.NewClient(u, false)
	if thumbprint != "" {
		sc.SetThumbprint(u.Host, thumbprint)
	}
	tr := sc.DefaultTransport()
	tr.DialTLSContext = tlsDialer{sc: sc, timeout: 5 * time.Second}.dial
	return &http.Client{Transport: tr}, u.Host
}

// The dialer trusts what govmomi's does: the CAs, else a pinned thumbprint
// (SHA-1 or SHA-256) when the failure is one of trust, and nothing else;
// bodies read through its buffered socket arrive whole.
func TestDialTrust(t *testing.T) {
	body := strings.Repeat("vspherefs ", 200000) // 2 MB: many records, many buffer fills
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	defer srv.Close()
	cert := srv.Certificate()
	get := func(c *http.Client) (string, error) {
		res, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}

	c, _ := dialClient(t, srv, "")
	if _, err := get(c); !soap.IsCertificateUntrusted(err) {
		t.Fatalf("unpinned self-signed server: %v", err)
	}
	for _, tp := range []string{soap.ThumbprintSHA1(cert), soap.ThumbprintSHA256(cert)} {
		c, _ := dialClient(t, srv, tp)
		got, err := get(c)
		if err != nil || got != body {
			t.Fatalf("pinned %s: %d bytes, %v", tp, len(got), err)
		}
	}
	c, _ = dialClient(t, srv, strings.Repeat("AB:", 19)+"AB")
	if _, err := get(c); err == nil || !strings.Contains(err.Error(), "thumbprint does not match") {
		t.Fatalf("wrong thumbprint: %v", err)
	}
}

// A server that takes the connection and never answers the handshake: the
// dial ends with the caller's context (tls.Dial, which govmomi uses, would
// wait on the kernel's TCP timeouts).
func TestDialHandshakeStall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	u, _ := url.Parse("https://" + ln.Addr().String())
	sc := soap.NewClient(u, false)
	for _, c := range []struct {
		timeout  time.Duration // the dialer's own (--timeout)
		deadline time.Duration // the caller's; 0: none
	}{{time.Hour, 200 * time.Millisecond}, {200 * time.Millisecond, 0}} {
		ctx, cancel := context.WithCancel(context.Background())
		if c.deadline > 0 {
			ctx, cancel = context.WithTimeout(context.Background(), c.deadline)
		}
		_, err := tlsDialer{sc: sc, timeout: c.timeout}.dial(ctx, "tcp", ln.Addr().String())
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%+v: %v, want the deadline", c, err)
		}
	}
}
