package backend

import (
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// tlsHint adds what to do to a certificate failure: the server's thumbprint,
// to check out of band and pin with --thumbprint, as govc prints it.
func tlsHint(host string, err error) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	if !errors.As(err, &ua) && !errors.As(err, &he) && !errors.As(err, &ci) {
		return err
	}
	if _, _, serr := net.SplitHostPort(host); serr != nil {
		host = net.JoinHostPort(host, "443")
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, derr := tls.DialWithDialer(d, "tcp", host, &tls.Config{InsecureSkipVerify: true})
	if derr != nil {
		return err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return err
	}
	sum := sha1.Sum(certs[0].Raw)
	tp := make([]string, len(sum))
	for i, b := range sum {
		tp[i] = fmt.Sprintf("%02X", b)
	}
	return fmt.Errorf("%w (server certificate thumbprint %s: verify it, then pin it with --thumbprint, or give --ca-certs FILE)", err, strings.Join(tp, ":"))
}
