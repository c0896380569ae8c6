package sim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vim25/soap"
)

// Endpoint prepares lib/item/file in a fresh download session of the admin
// client and returns its download URL and the session header to send with it,
// as govc library.export would use them. done deletes the session.
func (s *Server) Endpoint(ctx context.Context, lib, item, file string) (u string, header http.Header, done func(), err error) {
	lm, rc, _, err := s.admin(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	l, err := lm.GetLibraryByName(ctx, lib)
	if err != nil {
		return "", nil, nil, err
	}
	items, err := lm.FindLibraryItems(ctx, library.FindItem{LibraryID: l.ID, Name: item})
	if err != nil || len(items) != 1 {
		return "", nil, nil, fmt.Errorf("item %s/%s: %v (%d found)", lib, item, err, len(items))
	}
	sid, err := lm.CreateLibraryItemDownloadSession(ctx, library.Session{LibraryItemID: items[0]})
	if err != nil {
		return "", nil, nil, err
	}
	done = func() { _ = lm.DeleteLibraryItemDownloadSession(context.Background(), sid) }
	if _, err := lm.PrepareLibraryItemDownloadSessionFile(ctx, sid, file); err != nil {
		done()
		return "", nil, nil, err
	}
	for i := 0; ; i++ {
		info, err := lm.GetLibraryItemDownloadSessionFile(ctx, sid, file)
		if err != nil {
			done()
			return "", nil, nil, err
		}
		if info.Status == "PREPARED" {
			h := http.Header{}
			h.Set("vmware-api-session-id", rc.SessionID())
			return info.DownloadEndpoint.URI, h, done, nil
		}
		if i > 100 {
			done()
			return "", nil, nil, fmt.Errorf("%s: status %s", file, info.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Download reads lib/item/file through govmomi's own client: the independent
// path tests compare the mount against.
func (s *Server) Download(ctx context.Context, lib, item, file string) ([]byte, error) {
	u, h, done, err := s.Endpoint(ctx, lib, item, file)
	if err != nil {
		return nil, err
	}
	defer done()
	_, rc, _, _ := s.admin(ctx)
	pu, err := soap.ParseURL(u)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, pu.String(), nil)
	req.Header = h
	res, err := rc.Client.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", file, res.Status)
	}
	return io.ReadAll(res.Body)
}

// DownloadSessions lists the download sessions the server holds.
func (s *Server) DownloadSessions(ctx context.Context) ([]string, error) {
	lm, _, _, err := s.admin(ctx)
	if err != nil {
		return nil, err
	}
	return lm.ListLibraryItemDownloadSession(ctx)
}
