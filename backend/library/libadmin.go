package library

import (
	"context"
	"sort"

	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// CreateItem creates an empty item in a local library; typ is the item type
// ("" for a plain item, "ovf", "iso").
func (w *LibraryWriter) CreateItem(ctx context.Context, libID, name, typ string) (string, error) {
	var id string
	err := w.c.Do(ctx, "library/item:create", libID+"/"+name, func(ctx context.Context) (err error) {
		id, err = w.c.Library().CreateLibraryItem(ctx, library.Item{LibraryID: libID, Name: name, Type: typ})
		return err
	})
	return id, err
}

// DeleteItem deletes an item and its files.
func (w *LibraryWriter) DeleteItem(ctx context.Context, itemID string) error {
	return w.c.Do(ctx, "library/item:delete", itemID, func(ctx context.Context) error {
		return w.c.Library().DeleteLibraryItem(ctx, &library.Item{ID: itemID})
	})
}

// RenameItem renames an item within its library (an item update).
func (w *LibraryWriter) RenameItem(ctx context.Context, itemID, name string) error {
	return w.c.Do(ctx, "library/item:update", itemID, func(ctx context.Context) error {
		return w.c.Library().UpdateLibraryItem(ctx, &library.Item{ID: itemID, Name: name})
	})
}

// CreateLibrary creates a local library backed by a datastore (by its
// managed object id, e.g. "datastore-12"; see PickDatastore).
func (w *LibraryWriter) CreateLibrary(ctx context.Context, name, datastoreID string) (string, error) {
	var id string
	err := w.c.Do(ctx, "local-library:create", name, func(ctx context.Context) (err error) {
		id, err = w.c.Library().CreateLibrary(ctx, library.Library{
			Name:    name,
			Type:    "LOCAL",
			Storage: []library.StorageBacking{{DatastoreID: datastoreID, Type: "DATASTORE"}},
		})
		return err
	})
	return id, err
}

// DeleteLibrary deletes a local library with everything in it.
func (w *LibraryWriter) DeleteLibrary(ctx context.Context, libID string) error {
	return w.c.Do(ctx, "local-library:delete", libID, func(ctx context.Context) error {
		return w.c.Library().DeleteLibrary(ctx, &library.Library{ID: libID, Type: "LOCAL"})
	})
}

// PickDatastore chooses the datastore for a new library: the one named name
// if given (it must be accessible), else the first by name that is
// accessible, not entering maintenance, and has at least need bytes free.
// It returns the datastore's managed object id.
func PickDatastore(ctx context.Context, c backend.VimConn, name string, need int64) (string, error) {
	var dss []mo.Datastore
	err := c.Do(ctx, "Datastore:list", name, func(ctx context.Context) error {
		vc := c.Vim()
		v, err := view.NewManager(vc).CreateContainerView(ctx, vc.ServiceContent.RootFolder, []string{"Datastore"}, true)
		if err != nil {
			return err
		}
		defer v.Destroy(context.WithoutCancel(ctx))
		return v.Retrieve(ctx, []string{"Datastore"}, []string{"name", "summary"}, &dss)
	})
	if err != nil {
		return "", err
	}
	sort.Slice(dss, func(i, j int) bool { return dss[i].Name < dss[j].Name })
	for _, ds := range dss {
		s := ds.Summary
		if name != "" {
			if ds.Name != name {
				continue
			}
			if !s.Accessible {
				return "", remote.Errorf("Datastore:pick", name, remote.ErrHostDown, "datastore is not accessible")
			}
			return ds.Self.Value, nil
		}
		if s.Accessible && (s.MaintenanceMode == "" || s.MaintenanceMode == "normal") && s.FreeSpace >= need {
			return ds.Self.Value, nil
		}
	}
	if name != "" {
		return "", remote.Errorf("Datastore:pick", name, remote.ErrNotFound, "no datastore of that name")
	}
	return "", remote.Errorf("Datastore:pick", "", remote.ErrNoSpace, "no accessible datastore with %d bytes free", need)
}

// RenameLibrary renames a library (a library update).
func (w *LibraryWriter) RenameLibrary(ctx context.Context, libID, name string) error {
	return w.c.Do(ctx, "library:update", libID, func(ctx context.Context) error {
		return w.c.Library().UpdateLibrary(ctx, &library.Library{ID: libID, Name: name})
	})
}
