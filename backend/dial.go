package backend

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/vmware/govmomi/vim25/soap"
)

// sockBuf is how much of a socket one read takes. crypto/tls asks the conn
// for one record (16 KiB) at a time: unbuffered, a streamed GiB costs some
// 65,000 read calls, most of which find the socket empty and park on the
// poller. One 256 KiB read instead takes everything the socket holds.
const sockBuf = 256 << 10

// tlsDialer replaces govmomi's DialTLSContext: the same trust (the
// transport's TLS config, else a pinned thumbprint when the failure was one
// of trust), but dialled and shaken hands under the caller's context, which
// tls.Dial ignores, and over a buffered socket.
type tlsDialer struct {
	sc      *soap.Client
	timeout time.Duration // of the TCP connect and the handshake
}

func (d tlsDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	cfg := d.sc.DefaultTransport().TLSClientConfig
	conn, err := d.handshake(ctx, network, addr, cfg)
	if err == nil || !soap.IsCertificateUntrusted(err) {
		return conn, err
	}
	tp := d.sc.Thumbprint(addr)
	if tp == "" {
		return nil, err
	}
	pinned := cfg.Clone()
	pinned.InsecureSkipVerify = true // the thumbprint below is the check
	tc, perr := d.handshake(ctx, network, addr, pinned)
	if perr != nil {
		return nil, perr
	}
	if c := tc.ConnectionState().PeerCertificates; len(c) > 0 &&
		(soap.ThumbprintSHA256(c[0]) == tp || soap.ThumbprintSHA1(c[0]) == tp) {
		return tc, nil
	}
	_ = tc.Close()
	return nil, fmt.Errorf("host %q thumbprint does not match %q", addr, tp)
}

func (d tlsDialer) handshake(ctx context.Context, network, addr string, cfg *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	raw, err := (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(&bufConn{Conn: raw, r: bufio.NewReaderSize(raw, sockBuf)}, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	return tc, nil
}

// bufConn reads its socket through a buffer; writes go straight through.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }
