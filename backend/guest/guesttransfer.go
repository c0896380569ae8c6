package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"time"

	"github.com/vmware/govmomi/guest"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// GuestSource is a guest file's bytes as a cache.Source. Its transfer URLs
// are one-shot and ignore Range, so every Open is one
// InitiateFileTransferFromGuest and one GET from byte 0 (ranged = false):
// the cache spools the stream.
type GuestSource struct {
	v     *GuestVM
	path  string
	size  int64
	mtime time.Time
	// Origin is the file's path in the mount, shown by `vspherefs status`
	// for its transfers: set by whoever makes the source.
	Origin string
}

// Source returns the source of a guest file as last listed: its size and
// mtime are the version the cache keys bytes under.
func (v *GuestVM) Source(p string, size int64, mtime time.Time) *GuestSource {
	return &GuestSource{v: v, path: p, size: size, mtime: mtime}
}

// ID keys cached blocks by VM, path, size and mtime: a changed file is a new object.
func (s *GuestSource) ID() string {
	return fmt.Sprintf("guest:%s:%s#%d@%d", s.v.ref.Value, s.path, s.size, s.mtime.UnixNano())
}

// Size is the file's size as listed.
func (s *GuestSource) Size() int64 { return s.size }

// Open starts a new transfer and returns its body from byte 0, whatever off
// and n are. A file whose size or mtime changed since it was listed is
// ErrStale: its bytes would not be the version the cache holds.
func (s *GuestSource) Open(ctx context.Context, off, n int64) (io.ReadCloser, bool, error) {
	body, err := s.open(backend.WithOrigin(ctx, s.Origin)) // guestread.go
	return body, false, err
}

func mtimeOf(info *types.FileTransferInformation) time.Time {
	if info.Attributes == nil {
		return time.Time{}
	}
	if t := info.Attributes.GetGuestFileAttributes().ModificationTime; t != nil {
		return *t
	}
	return time.Time{}
}

// Upload writes size bytes from r to guest path p, and returns the file's
// attributes as read back. A failure leaves what p was as it was:
//
//   - replace (p exists): InitiateFileTransferToGuest to a temporary name in
//     the same directory, PUT, MoveFileInGuest over p;
//   - a new file: InitiateFileTransferToGuest to p itself, refusing to
//     overwrite, and PUT; a failed PUT removes what the guest may have kept.
//     (If p exists after all, the replace path is taken.)
//
// a.Mode, a.UID and a.GID go with the transfer, as govc guest.upload sends
// them, so the file never has a wider mode; then, if the writer set times,
// ChangeFileAttributesInGuest applies a. The read-back is one
// ListFilesInGuest of p alone.
func (v *GuestVM) Upload(ctx context.Context, p string, r io.ReadSeeker, size int64, a remote.GuestAttr, replace bool) (remote.GuestStat, error) {
	var err error
	if !replace {
		err = v.upload(ctx, p, p, r, size, a, false)
		if errors.Is(err, remote.ErrExists) {
			replace = true
		}
	}
	if replace {
		if _, serr := r.Seek(0, io.SeekStart); serr != nil {
			return remote.GuestStat{}, serr
		}
		dir, name := path.Split(p)
		tmp := dir + "." + name + ".vspherefs-" + randomSuffix()
		if err = v.upload(ctx, p, tmp, r, size, a, false); err == nil {
			// (not MoveFile: the read-back below records p in the lists)
			if err = v.moveFile(ctx, tmp, p, true); err != nil {
				v.forget(p)
				_ = v.Remove(context.WithoutCancel(ctx), tmp)
			}
		}
	}
	if err != nil {
		return remote.GuestStat{}, err
	}
	if a.Mtime != nil || a.Atime != nil {
		if err := v.Chattr(ctx, p, a); err != nil {
			return remote.GuestStat{}, err
		}
	}
	s, err := v.Stat(ctx, p)
	if err != nil {
		return remote.GuestStat{}, err
	}
	v.Noted(p, s)
	return s, nil
}

// upload is InitiateFileTransferToGuest of dst and its PUT, tried again
// (a fresh URL each time: they are one-shot) when the PUT is reset or the
// host is briefly unavailable; p is the path the caller asked for, for errors.
func (v *GuestVM) upload(ctx context.Context, p, dst string, r io.ReadSeeker, size int64, a remote.GuestAttr, overwrite bool) error {
	gdst, err := v.target(dst)
	if err != nil {
		return err
	}
	gp, _ := v.gpath(p)
	call, on := "InitiateFileTransferToGuest", v.name+":"+gp
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var u string
		err = v.do(ctx, call, gdst, func(ctx context.Context, fm *guest.FileManager, auth types.BaseGuestAuthentication) error {
			raw, err := fm.InitiateFileTransferToGuest(ctx, auth, gdst, v.attrs(remote.GuestAttr{Mode: a.Mode, UID: a.UID, GID: a.GID}), size, overwrite)
			if err != nil {
				return err
			}
			tu, err := transferURL(ctx, fm, raw)
			if err != nil {
				return err
			}
			u = tu.String()
			return nil
		})
		if err != nil {
			return err
		}
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return backend.NewError("stage", on, remote.ErrIO, err)
		}
		perr := v.put(ctx, on, u, r, size)
		if perr == nil {
			return nil
		}
		_ = v.Remove(context.WithoutCancel(ctx), dst) // the guest may have kept part of it
		var be *remote.Error
		if attempt >= guestPutAttempts || !errors.As(perr, &be) || !backend.PutRetryable(ctx, be) {
			if be != nil && attempt > 1 {
				be.Fault += fmt.Sprintf(" (after %d attempts)", attempt)
			}
			return perr
		}
		v.g.c.Log().Warn("PUT failed, retrying with a new transfer URL", "on", on, "call", "PUT guest file", "fault", be.Fault, "attempt", attempt)
		select {
		case <-ctx.Done():
			return backend.NewError("PUT guest file", on, remote.ErrIO, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// guestPutAttempts is how many times a guest file's PUT is tried.
const guestPutAttempts = 3

// put is one PUT under the progress deadline (--timeout without a byte
// taken, or without an answer after the last one, fails it).
func (v *GuestVM) put(ctx context.Context, on, u string, r io.Reader, size int64) error {
	g := backend.NewStallGuard(ctx, v.g.c.CallTimeout(), "PUT guest file", on)
	defer g.Stop()
	body := backend.NewUploadBody(g.Wrap(io.NopCloser(io.LimitReader(r, size))))
	defer body.End() // a retry reads r again
	req, err := http.NewRequestWithContext(g.Context(), http.MethodPut, u, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Close = true
	res, err := v.g.c.HTTP().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return backend.NewError("PUT guest file", on, remote.ErrIO, ctx.Err())
		}
		if gerr := g.Err(err); gerr != err {
			return gerr
		}
		return v.g.c.Classify("PUT guest file", on, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		return remote.Errorf("PUT guest file", on, remote.ErrIO, "%s", res.Status)
	}
	return nil
}

// Transient tells the cache that a lost stream of this file may be resumed.
func (s *GuestSource) Transient(err error) bool { return backend.Transient(err) }
