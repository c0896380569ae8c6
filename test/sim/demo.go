package sim

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"sync"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
)

// DemoFile is one file of the demo content.
type DemoFile struct {
	Library, Item, Name string
	Size                int64
}

// Demo lists the demo content: two libraries, files of several sizes, with
// bytes given by DemoBytes(Library/Item/Name).
var Demo = []DemoFile{
	{"demo-library", "empty", "empty.txt", 0},
	{"demo-library", "hello", "hello.txt", 22},
	{"demo-library", "multi", "a.bin", 1 << 20},
	{"demo-library", "multi", "b.bin", 4<<20 + 1},
	{"demo-library", "multi", "readme.txt", 100},
	{"demo-library", "big", "big.bin", 64<<20 + 12345},
	{"iso-library", "tools", "tools.iso", 8 << 20},
}

// DemoBytes is the deterministic content of a demo file: a ChaCha8 stream
// seeded by its path (so any size can be made and checked without storing it).
func DemoBytes(path string, size int64) io.Reader {
	seed := sha256.Sum256([]byte(path))
	return io.LimitReader(rand.NewChaCha8(seed), size)
}

// CreateDemo creates the demo libraries and items.
func (s *Server) CreateDemo(ctx context.Context) error {
	libs := map[string]string{}
	items := map[string]string{}
	for _, f := range Demo {
		libID, ok := libs[f.Library]
		if !ok {
			id, err := s.CreateLibrary(ctx, f.Library)
			if err != nil {
				return err
			}
			libs[f.Library], libID = id, id
		}
		key := f.Library + "/" + f.Item
		itemID, ok := items[key]
		if !ok {
			id, err := s.CreateItem(ctx, libID, f.Item)
			if err != nil {
				return err
			}
			items[key], itemID = id, id
		}
		if err := s.UploadFile(ctx, itemID, f.Name, DemoBytes(key+"/"+f.Name, f.Size), f.Size); err != nil {
			return err
		}
	}
	return nil
}

type adminClient struct {
	once sync.Once
	vim  *vim25.Client
	rc   *rest.Client
	lm   *library.Manager
	dsID string
	err  error
}

// admin is the simulator's own logged-in client, for setting up content.
func (s *Server) admin(ctx context.Context) (*library.Manager, *rest.Client, string, error) {
	a := &s.adminC
	a.once.Do(func() {
		c, rc, err := s.Client(ctx)
		if err != nil {
			a.err = err
			return
		}
		ds, err := find.NewFinder(c.Client).DefaultDatastore(ctx)
		if err != nil {
			dc, derr := find.NewFinder(c.Client).DefaultDatacenter(ctx)
			if derr != nil {
				a.err = err
				return
			}
			ds, err = find.NewFinder(c.Client).SetDatacenter(dc).DefaultDatastore(ctx)
			if err != nil {
				a.err = err
				return
			}
		}
		a.vim, a.rc, a.lm, a.dsID = c.Client, rc, library.NewManager(rc), ds.Reference().Value
	})
	return a.lm, a.rc, a.dsID, a.err
}

// CreateLibrary creates a local library on the first datastore.
func (s *Server) CreateLibrary(ctx context.Context, name string) (string, error) {
	lm, _, ds, err := s.admin(ctx)
	if err != nil {
		return "", err
	}
	return lm.CreateLibrary(ctx, library.Library{
		Name:    name,
		Type:    "LOCAL",
		Storage: []library.StorageBacking{{DatastoreID: ds, Type: "DATASTORE"}},
	})
}

// CreateItem creates an empty item in a library.
func (s *Server) CreateItem(ctx context.Context, libID, name string) (string, error) {
	lm, _, _, err := s.admin(ctx)
	if err != nil {
		return "", err
	}
	return lm.CreateLibraryItem(ctx, library.Item{Name: name, LibraryID: libID})
}

// UploadFile adds a file to an item through an update session, as govc library.import does.
func (s *Server) UploadFile(ctx context.Context, itemID, name string, r io.Reader, size int64) error {
	lm, rc, _, err := s.admin(ctx)
	if err != nil {
		return err
	}
	sid, err := lm.CreateLibraryItemUpdateSession(ctx, library.Session{LibraryItemID: itemID})
	if err != nil {
		return err
	}
	info, err := lm.AddLibraryItemFile(ctx, sid, library.UpdateFile{Name: name, SourceType: "PUSH", Size: size})
	if err != nil {
		_ = lm.CancelLibraryItemUpdateSession(ctx, sid)
		return err
	}
	u, err := soap.ParseURL(info.UploadEndpoint.URI)
	if err != nil {
		return err
	}
	p := soap.DefaultUpload
	p.ContentLength = size
	if err := rc.Upload(ctx, r, u, &p); err != nil {
		_ = lm.CancelLibraryItemUpdateSession(ctx, sid)
		return err
	}
	return lm.CompleteLibraryItemUpdateSession(ctx, sid)
}
