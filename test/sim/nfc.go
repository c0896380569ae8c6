package sim

import (
	"context"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// nfcPattern is more specific than vcsim's "/nfc/": disk GETs of our export
// leases come here; anything else (imports, vcsim's own leases) goes on to
// vcsim's handler.
const nfcPattern = "GET /nfc/{lease}/{file}"

// ServeHTTP serves a disk of an export lease while the lease is ready, and
// cuts the transfer off if the lease ends meanwhile (a timeout does that).
func (x *Exports) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l := x.lease(r.PathValue("lease"))
	if l == nil {
		simulator.ServeNFC(w, r)
		return
	}
	var file *leaseFile
	var ctx context.Context
	ready := false
	x.s.bgContext().WithLock(l, func() {
		ready, ctx = l.State == types.HttpNfcLeaseStateReady, l.ctx
		for _, f := range l.files {
			if f.name == r.PathValue("file") {
				file = f
			}
		}
	})
	if !ready || file == nil {
		http.Error(w, "no such lease or file, or lease not ready", http.StatusNotFound)
		return
	}
	f, err := os.Open(file.stream.path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(&countingWriter{ResponseWriter: w, n: &x.served}, r, file.name, time.Time{}, &leaseReader{f, ctx})
	if ctx.Err() != nil {
		panic(http.ErrAbortHandler) // the client sees a broken transfer, not a short file
	}
}

// leaseReader fails once the lease has ended.
type leaseReader struct {
	f   *os.File
	ctx context.Context
}

func (r *leaseReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.f.Read(p)
}

func (r *leaseReader) Seek(off int64, whence int) (int64, error) { return r.f.Seek(off, whence) }

var _ io.ReadSeeker = (*leaseReader)(nil)
