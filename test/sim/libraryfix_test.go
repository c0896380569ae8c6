package sim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vapi/library"
)

func TestLibraryLifecycle(t *testing.T) {
	f := newUpdateFixture(t)
	ctx, lm := context.Background(), f.lm
	_, _, ds, err := f.s.admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	create := func(name, dsID string) (string, error) {
		return lm.CreateLibrary(ctx, library.Library{Name: name, Type: "LOCAL",
			Storage: []library.StorageBacking{{DatastoreID: dsID, Type: "DATASTORE"}}})
	}
	libID, err := create("new-lib", ds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := create("other-lib", "datastore-nosuch"); err == nil || !strings.Contains(err.Error(), "invalid_argument") {
		t.Fatalf("unknown datastore: %v", err)
	}
	if _, err := lm.CreateLibrary(ctx, library.Library{Name: "no-storage", Type: "LOCAL"}); err == nil || !strings.Contains(err.Error(), "invalid_argument") {
		t.Fatalf("no storage backing: %v", err)
	}
	lib, err := lm.GetLibraryByID(ctx, libID)
	if err != nil {
		t.Fatal(err)
	}

	a, err := lm.CreateLibraryItem(ctx, library.Item{Name: "a", LibraryID: libID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lm.CreateLibraryItem(ctx, library.Item{Name: "b", LibraryID: libID}); err != nil {
		t.Fatal(err)
	}
	if _, err := lm.CreateLibraryItem(ctx, library.Item{Name: "a", LibraryID: libID}); err == nil || !strings.Contains(err.Error(), "already_exists") {
		t.Fatalf("duplicate item: %v", err)
	}
	if err := lm.UpdateLibraryItem(ctx, &library.Item{ID: a, Name: "b"}); err == nil || !strings.Contains(err.Error(), "already_exists") {
		t.Fatalf("rename onto b: %v", err)
	}
	if err := lm.UpdateLibraryItem(ctx, &library.Item{ID: a, Name: "a2"}); err != nil {
		t.Fatal(err)
	}
	// Same name in another library is fine.
	if err := lm.UpdateLibraryItem(ctx, &library.Item{ID: a, Name: "hello"}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.UploadFile(ctx, a, "f.txt", strings.NewReader("data"), 4); err != nil {
		t.Fatal(err)
	}
	got := f.state("new-lib", "hello")
	if string(got.bytes["f.txt"]) != "data" {
		t.Fatalf("renamed item content %v", got.files)
	}
	dir, err := f.s.libraryDir(lib)
	if err != nil {
		t.Fatal(err)
	}
	if err := lm.DeleteLibraryItem(ctx, &library.Item{ID: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := lm.GetLibraryItem(ctx, a); err == nil {
		t.Fatal("deleted item still there")
	}
	if _, err := os.Stat(filepath.Join(dir, a)); !os.IsNotExist(err) {
		t.Fatalf("item directory left: %v", err)
	}
	if err := lm.DeleteLibrary(ctx, lib); err != nil {
		t.Fatal(err)
	}
	if _, err := lm.GetLibraryByID(ctx, libID); err == nil {
		t.Fatal("deleted library still there")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("library directory left: %v", err)
	}
}

// The file list of a download session lives at the root of a subtree our mux
// serves (prepare); it must reach vcsim, not a redirect.
func TestDownloadSessionFileList(t *testing.T) {
	f := newUpdateFixture(t)
	sid, err := f.lm.CreateLibraryItemDownloadSession(f.ctx, library.Session{LibraryItemID: f.itemID("demo-library", "multi")})
	if err != nil {
		t.Fatal(err)
	}
	files, err := f.lm.ListLibraryItemDownloadSessionFile(f.ctx, sid)
	if err != nil || len(files) != 3 {
		t.Fatalf("files %+v %v", files, err)
	}
}
