package sim

import (
	"context"
	"io"
	"net/http"
	"os"
	"sync"
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
		l.transferred = l.transferred || ready
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
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	x.transferStarted()
	// The transfer ends when its last byte is read, before it is sent: a
	// client that has the whole body may start its next GET before this
	// handler returns, and that must not count as two at once.
	end := sync.OnceFunc(func() { x.active.Add(-1) })
	defer end()
	x.firstGet.CompareAndSwap(0, time.Now().UnixNano())
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(&countingWriter{ResponseWriter: w, n: &x.served}, r, file.name, time.Time{}, &leaseReader{f: f, ctx: ctx, x: x, size: st.Size(), end: func() { end(); file.sent.Store(true) }, file: file})
	if ctx.Err() != nil {
		panic(http.ErrAbortHandler) // the client sees a broken transfer, not a short file
	}
}

// leaseReader fails once the lease has ended, and applies Throttle and Corrupt.
type leaseReader struct {
	f    *os.File
	ctx  context.Context
	x    *Exports
	off  int64
	size int64
	end  func()     // called once the last byte has been read
	file *leaseFile // whether to serve a wrong byte is asked at each read (Corrupt)
}

func (r *leaseReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	rate := r.x.rate.Load()
	if rate > 0 {
		p = p[:min(len(p), int(rate/20)+1)]
		select {
		case <-time.After(time.Duration(int64(len(p)) * int64(time.Second) / rate)):
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
	n, err := r.f.Read(p)
	const at = 1 << 20
	if r.x.corrupts(r.file) && r.off <= at && at < r.off+int64(n) {
		p[at-r.off] ^= 0xff
	}
	r.off += int64(n)
	if r.off >= r.size {
		r.end()
	}
	return n, err
}

func (r *leaseReader) Seek(off int64, whence int) (int64, error) {
	n, err := r.f.Seek(off, whence)
	r.off = n
	return n, err
}

var _ io.ReadSeeker = (*leaseReader)(nil)
