package nfc

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// diskServer serves data, ignoring Range (200 from byte 0); its first
// answer is reset after cut bytes; with change, later answers differ.
func diskServer(t *testing.T, data []byte, cut int, change bool) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		body := data
		if change && k > 1 {
			body = bytes.Clone(data)
			body[10] ^= 1
		}
		if k == 1 {
			w.Write(body[:cut])
			w.(http.Flusher).Flush()
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func fetchFromFake(t *testing.T, srv *httptest.Server) ([]byte, error) {
	u, _ := url.Parse(srv.URL + "/disk.vmdk")
	c := &vim25.Client{Client: soap.NewClient(u, true)}
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "d"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var have int64
	for attempt := 0; attempt < 2; attempt++ {
		n, err := fetchDisk(context.Background(), c, nfc.FileItem{URL: u, OvfFileItem: types.OvfFileItem{Path: "disk.vmdk"}}, "GET /disk.vmdk", out, have, out, 0)
		have += n
		if err == nil {
			break
		}
		if attempt == 1 || !backend.Transient(err) {
			return nil, err
		}
	}
	return os.ReadFile(out.Name())
}

// TestExportDiskResumeWithoutRange: a disk transfer reset part-way, from a
// host that ignores Range, resumes from byte 0 with the spooled bytes
// checked; bytes that changed fail it rather than mixing.
func TestExportDiskResumeWithoutRange(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.Read(data)
	srv, n := diskServer(t, data, 1<<20, false)
	got, err := fetchFromFake(t, srv)
	if err != nil || !bytes.Equal(got, data) || n.Load() != 2 {
		t.Fatalf("resumed: %d bytes, %v, %d requests", len(got), err, n.Load())
	}
	srv, _ = diskServer(t, data, 1<<20, true)
	if _, err := fetchFromFake(t, srv); err == nil || !errors.Is(err, remote.ErrIO) {
		t.Fatalf("changed between tries: %v, want an error", err)
	}
}
