package sim

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vim25/soap"
)

// download fetches a file through a download session, as govc library.export does.
func download(t *testing.T, s *Server, lib, item, name string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	ctx := context.Background()
	_, rc, err := s.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lm := library.NewManager(rc)
	l, err := lm.GetLibraryByName(ctx, lib)
	if err != nil {
		t.Fatal(err)
	}
	items, err := lm.FindLibraryItems(ctx, library.FindItem{LibraryID: l.ID, Name: item})
	if err != nil || len(items) != 1 {
		t.Fatalf("find item: %v %v", items, err)
	}
	sid, err := lm.CreateLibraryItemDownloadSession(ctx, library.Session{LibraryItemID: items[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer lm.DeleteLibraryItemDownloadSession(ctx, sid)
	if _, err := lm.PrepareLibraryItemDownloadSessionFile(ctx, sid, name); err != nil {
		t.Fatal(err)
	}
	var info *library.DownloadFile
	for i := 0; i < 10; i++ {
		info, err = lm.GetLibraryItemDownloadSessionFile(ctx, sid, name)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status == "PREPARED" {
			break
		}
	}
	if info.Status != "PREPARED" {
		t.Fatalf("status %s", info.Status)
	}
	u, _ := soap.ParseURL(info.DownloadEndpoint.URI)
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	req.Header.Set("vmware-api-session-id", rc.SessionID())
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := rc.Client.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func TestDemoDownload(t *testing.T) {
	s := StartT(t)
	for _, f := range Demo {
		_, got := download(t, s, f.Library, f.Item, f.Name, nil)
		want, _ := io.ReadAll(DemoBytes(f.Library+"/"+f.Item+"/"+f.Name, f.Size))
		if !bytes.Equal(got, want) {
			t.Fatalf("%s/%s/%s: got %d bytes, want %d", f.Library, f.Item, f.Name, len(got), len(want))
		}
	}
	if s.Prepare.Count("hello.txt") != 1 {
		t.Fatalf("prepare count %d", s.Prepare.Count("hello.txt"))
	}
}

func TestRangeSwitch(t *testing.T) {
	s := StartT(t)
	res, b := download(t, s, "demo-library", "hello", "hello.txt", map[string]string{"Range": "bytes=2-5"})
	if res.StatusCode != 200 || len(b) != 22 {
		t.Fatalf("without ranges: %d %d", res.StatusCode, len(b))
	}
	s.Library.SetRanges(true)
	res, b = download(t, s, "demo-library", "hello", "hello.txt", map[string]string{"Range": "bytes=2-5"})
	if res.StatusCode != 206 || len(b) != 4 {
		t.Fatalf("with ranges: %d %d", res.StatusCode, len(b))
	}
}

func TestPrepareError(t *testing.T) {
	s := StartT(t)
	s.Prepare.Fail("hello.txt", "disk on fire")
	ctx := context.Background()
	_, rc, _ := s.Client(ctx)
	lm := library.NewManager(rc)
	l, _ := lm.GetLibraryByName(ctx, "demo-library")
	items, _ := lm.FindLibraryItems(ctx, library.FindItem{LibraryID: l.ID, Name: "hello"})
	sid, _ := lm.CreateLibraryItemDownloadSession(ctx, library.Session{LibraryItemID: items[0]})
	_, _ = lm.PrepareLibraryItemDownloadSessionFile(ctx, sid, "hello.txt")
	var err error
	for i := 0; i < 3 && err == nil; i++ {
		_, err = lm.GetLibraryItemDownloadSessionFile(ctx, sid, "hello.txt")
	}
	if err == nil || err.Error() != "disk on fire" {
		t.Fatalf("want prepare error, got %v", err)
	}
}
