package sim

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
)

func newHash(c *library.Checksum) hash.Hash {
	if c == nil {
		return nil
	}
	switch c.Algorithm {
	case "MD5":
		return md5.New()
	case "SHA1":
		return sha1.New()
	case "SHA256":
		return sha256.New()
	case "SHA512":
		return sha512.New()
	}
	return nil
}

// put receives a PUSH upload (PUT on the upload endpoint): the bytes are
// staged in the session's directory, never in the item, and the file goes
// READY, or ERROR on a checksum or size mismatch or a broken transfer.
// SetPutDelay makes every upload pause before reading its body, for tests
// of what happens while a commit is under way.
func (u *UpdateSessions) SetPutDelay(d time.Duration) { u.putDelay.Store(int64(d)) }

func (u *UpdateSessions) put(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if !u.authorized(w, r) {
		return
	}
	p := strings.Split(r.URL.Path, "/")
	id, name := p[len(p)-2], p[len(p)-1]
	u.mu.Lock()
	f, ok := u.uploads[id]
	if !ok || f.Name != name || f.SourceType != "PUSH" || f.sess.State != "ACTIVE" {
		u.mu.Unlock()
		vapiError(w, errNotFound, "no upload endpoint %s/%s", id, name)
		return
	}
	if u.fault(FailPut503) {
		u.mu.Unlock()
		w.Header().Set("Connection", "close")
		http.Error(w, "injected fault: service unavailable", http.StatusServiceUnavailable)
		return
	}
	reset, stall, stallAt := int64(-1), time.Duration(0), u.stallAt
	if u.fault(FailPut) {
		f.resets = true
	}
	if f.resets || u.fault(FailPutOnce) {
		reset = u.resetAt
		if reset < 0 {
			reset = max(r.ContentLength, 0) / 2
		}
	} else if u.fault(StallPut) {
		stall = u.stallFor
	}
	f.Status, f.ErrorMessage = "TRANSFERRING", nil
	f.received.Store(0)
	dir, declared := f.sess.dir, f.Size
	f.sess.busy++
	u.mu.Unlock()
	defer u.idle(f.sess)

	tmp, err := os.CreateTemp(dir, "put-*")
	if err != nil {
		u.received(f, "", fmt.Errorf("staging: %w", err))
		vapiError(w, errInternal, "%v", err)
		return
	}
	h := newHash(f.Checksum)
	var dst io.Writer = &progressWriter{w: tmp, f: f, total: &u.receivedAll}
	if h != nil {
		dst = io.MultiWriter(dst, h)
	}
	if reset >= 0 {
		// Injected fault: read part of the body, then drop the connection
		// as a reset server or proxy would.
		_, _ = io.CopyN(dst, r.Body, reset)
		tmp.Close()
		os.Remove(tmp.Name())
		u.received(f, "", fmt.Errorf("injected fault: connection closed after %d bytes", reset))
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	if stall > 0 {
		// Injected fault: take half the body, then stop reading, as a
		// server that hangs does; the client has to give up by itself.
		if stallAt < 0 {
			stallAt = max(r.ContentLength, 0) / 2
		}
		_, _ = io.CopyN(dst, r.Body, stallAt)
		select {
		case <-time.After(stall):
		case <-u.closed:
		case <-r.Context().Done():
		}
		tmp.Close()
		os.Remove(tmp.Name())
		u.received(f, "", fmt.Errorf("injected fault: the server stopped reading"))
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	if d := time.Duration(u.putDelay.Load()); d > 0 {
		time.Sleep(d)
	}
	n, err := io.CopyBuffer(dst, r.Body, make([]byte, 1<<20))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && declared > 0 && n != declared {
		err = fmt.Errorf("received %d bytes, the file was declared with %d", n, declared)
	}
	if err == nil && h != nil {
		if sum := fmt.Sprintf("%x", h.Sum(nil)); !strings.EqualFold(sum, f.Checksum.Checksum) {
			err = fmt.Errorf("checksum mismatch: %s of the bytes received is %s, expected %s", f.Checksum.Algorithm, sum, f.Checksum.Checksum)
		}
	}
	if err != nil {
		os.Remove(tmp.Name())
		u.received(f, "", err)
		vapiError(w, errInvalidArgument, "upload of %s: %v", name, err)
		return
	}
	if !u.received(f, tmp.Name(), nil) {
		os.Remove(tmp.Name())
		vapiError(w, errNotAllowed, "upload of %s: the file was redefined or its session ended", name)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// idle marks the end of a transfer: the session's idle time starts again.
func (u *UpdateSessions) idle(s *updateSession) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s.busy--
	u.touch(s)
}

// received records the outcome of a transfer; it returns false (and changes
// nothing) if the file was redefined or its session ended meanwhile.
func (u *UpdateSessions) received(f *updateFile, staged string, err error) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.expire() // a session that expired during the transfer takes nothing from it
	if u.uploads[f.id] != f || f.sess.State != "ACTIVE" {
		return false
	}
	if err != nil {
		f.Status = "ERROR"
		f.ErrorMessage = &rest.LocalizableMessage{ID: "com.vmware.vdcs.cls-main.transfer_error", DefaultMessage: err.Error()}
		return true
	}
	final := filepath.Join(f.sess.dir, f.id)
	if os.Rename(staged, final) != nil {
		f.Status = "ERROR"
		f.ErrorMessage = &rest.LocalizableMessage{DefaultMessage: "staging failed"}
		return true
	}
	f.staged = final
	f.Status = "READY"
	f.Size = f.received.Load()
	return true
}

// progressWriter counts bytes_transferred as they arrive.
type progressWriter struct {
	w     io.Writer
	f     *updateFile
	total *atomic.Int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.f.received.Add(int64(n))
	p.total.Add(int64(n))
	return n, err
}

// pull fetches a PULL source (http or https only) into the staging directory.
func (u *UpdateSessions) pull(f *updateFile) {
	defer f.sess.pulls.Done()
	defer u.idle(f.sess)
	err := func() error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		res, err := c.Get(f.SourceEndpoint.URI)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return errors.New(res.Status)
		}
		tmp, err := os.CreateTemp(f.sess.dir, "pull-*")
		if err != nil {
			return err
		}
		h := newHash(f.Checksum)
		var dst io.Writer = &progressWriter{w: tmp, f: f, total: &u.receivedAll}
		if h != nil {
			dst = io.MultiWriter(dst, h)
		}
		_, err = io.Copy(dst, res.Body)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil && h != nil {
			if sum := fmt.Sprintf("%x", h.Sum(nil)); !strings.EqualFold(sum, f.Checksum.Checksum) {
				err = fmt.Errorf("checksum mismatch: %s is %s, expected %s", f.Checksum.Algorithm, sum, f.Checksum.Checksum)
			}
		}
		if err != nil {
			os.Remove(tmp.Name())
			return err
		}
		if !u.received(f, tmp.Name(), nil) {
			os.Remove(tmp.Name())
		}
		return nil
	}()
	if err != nil {
		u.received(f, "", fmt.Errorf("pull %s: %w", f.SourceEndpoint.URI, err))
	}
}
