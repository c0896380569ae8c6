package guest

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/vmware/govmomi/guest"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// open starts a transfer of the guest file and returns its body from byte
// 0. Within the one deadline it retries what is safe: the call
// (InitiateFileTransferFromGuest is idempotent: Conn.Do retries it) and the
// GET, on a 503, a reset or a refused connection, each time with a new
// transfer URL (they are one-shot). A GET that sends nothing for --timeout,
// headers included, fails with EIO.
func (s *GuestSource) open(ctx context.Context) (io.ReadCloser, error) {
	deadline := time.Now().Add(s.v.g.c.Config.Timeout)
	for attempt := 0; ; attempt++ {
		body, err := s.get(ctx)
		if err == nil {
			return body, nil
		}
		if ctx.Err() != nil || !backend.Transient(err) {
			return nil, err
		}
		wait := backend.Backoff(attempt)
		if time.Until(deadline) < wait {
			return nil, err
		}
		if backend.SleepCtx(ctx, wait) != nil {
			return nil, ctx.Err()
		}
	}
}

func (s *GuestSource) get(ctx context.Context) (io.ReadCloser, error) {
	gp, err := s.v.gpath(s.path)
	if err != nil {
		return nil, err
	}
	call, on := "InitiateFileTransferFromGuest", s.v.name+":"+gp
	var info *types.FileTransferInformation
	var u string
	err = s.v.do(ctx, call, gp, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) error {
		var err error
		if info, err = fm.InitiateFileTransferFromGuest(ctx, auth, gp); err != nil {
			return err
		}
		tu, err := transferURL(ctx, fm, info.Url)
		if err != nil {
			return err
		}
		u = tu.String()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if info.Size != s.size || !s.mtime.IsZero() && !mtimeOf(info).Equal(s.mtime) {
		return nil, remote.Errorf(call, on, remote.ErrStale, "size %d mtime %v, listed as %d %v", info.Size, mtimeOf(info), s.size, s.mtime)
	}
	const get = "GET guest file"
	guard := backend.NewStallGuard(ctx, s.v.g.c.Config.Timeout, get, on)
	req, err := http.NewRequestWithContext(guard.Context(), http.MethodGet, u, nil)
	if err != nil {
		guard.Stop()
		return nil, err
	}
	req.Close = true // as govc: no keep-alive to the transfer host
	start := time.Now()
	res, err := s.v.g.c.HTTP().Do(req)
	if s.v.g.c.Config.Debug {
		s.v.g.c.Config.Log.Debug("api", "call", get, "on", on, "took", time.Since(start).Round(time.Microsecond), "err", backend.ErrText(err))
	}
	if err != nil {
		guard.Stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, backend.TransportError(get, on, guard.Err(err))
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		guard.Stop()
		return nil, &remote.Error{Call: get, On: on, Kind: remote.ErrIO, Fault: res.Status, Err: &backend.HTTPStatus{Code: res.StatusCode, Status: res.Status}}
	}
	if res.ContentLength >= 0 && res.ContentLength != s.size {
		res.Body.Close()
		guard.Stop()
		return nil, remote.Errorf(get, on, remote.ErrStale, "%d bytes, listed as %d", res.ContentLength, s.size)
	}
	return &backend.TransportBody{ReadCloser: guard.Wrap(res.Body), Call: get, On: on}, nil
}
