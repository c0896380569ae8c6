package sim

import (
	"encoding/pem"

	"github.com/vmware/govmomi/simulator"
)

// pinHostThumbprints gives every host the simulator's own certificate and
// thumbprint. vcsim leaves them empty, and guest.FileManager.TransferURL pins
// summary.config.sslThumbprint for the transfer host: empty, it drops the
// thumbprint a client gave with --thumbprint, and the transfer fails TLS.
func (s *Server) pinHostThumbprints() {
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	for _, e := range s.model.Map().All("HostSystem") {
		h := e.(*simulator.HostSystem)
		h.Summary.Config.SslThumbprint = s.Thumbprint
		if h.Config != nil {
			c := *h.Config // may be shared with vcsim's templates: copy, not write through
			c.Certificate = cert
			h.Config = &c
		}
	}
}
