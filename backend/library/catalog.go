// Package library is the content library client (the /rest API that
// govmomi's vapi/library speaks): the catalog of libraries, items and files,
// download sessions and their byte sources, update sessions that commit
// files whole or streamed, and library and item administration.
package library

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/vmware/govmomi/vapi/library"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// Catalog lists libraries, items and files. The old /rest API has no bulk
// get, so a listing is 1 + N calls: details are cached by id (with the item's
// content version) and only the id lists are refreshed when the TTL passes.
type Catalog struct {
	c   *backend.Conn
	ttl time.Duration

	mu    sync.Mutex
	lists map[string]backend.Timed[[]string] // id lists: "" the libraries', a library's id its items'
	libs  map[string]remote.Library
	items map[string]backend.Timed[remote.Item]
	files map[string]backend.Timed[[]remote.File] // by item
	views map[string]itemView                     // sorted items by library, as last built
	gen   uint64                                  // bumped when any item's details change
}

// itemView is a library's sorted item list, valid for one id list and gen.
type itemView struct {
	at    time.Time
	gen   uint64
	items []remote.Item
}

// NewCatalog makes a catalog whose lists live for ttl.
func NewCatalog(c *backend.Conn, ttl time.Duration) *Catalog {
	return &Catalog{c: c, ttl: ttl, libs: map[string]remote.Library{}, lists: map[string]backend.Timed[[]string]{},
		items: map[string]backend.Timed[remote.Item]{}, files: map[string]backend.Timed[[]remote.File]{}, views: map[string]itemView{}}
}

// listIDs returns the id list k.lists[key], listed again with one call named
// call (on key) once it is older than the TTL, and the ids in it that have
// lacks (whose details are to get).
func listIDs[V any](ctx context.Context, k *Catalog, key string, have map[string]V, call string, list func(context.Context) ([]string, error)) (backend.Timed[[]string], []string, error) {
	k.mu.Lock()
	ids := k.lists[key]
	k.mu.Unlock()
	if !ids.Fresh(k.ttl) {
		var got []string
		err := k.c.Do(ctx, call, key, func(ctx context.Context) (err error) {
			got, err = list(ctx)
			return err
		})
		if err != nil {
			return ids, nil, err
		}
		ids = backend.Timed[[]string]{V: got, At: time.Now()}
		k.mu.Lock()
		k.lists[key] = ids
		k.mu.Unlock()
	}
	var missing []string
	k.mu.Lock()
	for _, id := range ids.V {
		if _, ok := have[id]; !ok {
			missing = append(missing, id)
		}
	}
	k.mu.Unlock()
	return ids, missing, nil
}

// Libraries lists the libraries, oldest first.
func (k *Catalog) Libraries(ctx context.Context) ([]remote.Library, error) {
	ids, missing, err := listIDs(ctx, k, "", k.libs, "library:list",
		func(ctx context.Context) ([]string, error) { return k.c.Library().ListLibraries(ctx) })
	if err != nil {
		return nil, err
	}
	got, err := parallel(ctx, missing, func(ctx context.Context, id string) (remote.Library, error) {
		var l *library.Library
		err := k.c.Do(ctx, "library:get", id, func(ctx context.Context) (err error) {
			l, err = k.c.Library().GetLibraryByID(ctx, id)
			return err
		})
		if err != nil {
			return remote.Library{}, err
		}
		return toLibrary(l), nil
	})
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, l := range got {
		k.libs[l.ID] = l
	}
	out := make([]remote.Library, 0, len(ids.V))
	for _, id := range ids.V {
		if l, ok := k.libs[id]; ok {
			out = append(out, l)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func toLibrary(l *library.Library) remote.Library {
	out := remote.Library{ID: l.ID, Name: l.Name, Type: l.Type, Subscribed: l.Type == "SUBSCRIBED" || l.Subscription != nil}
	if l.CreationTime != nil {
		out.Created = *l.CreationTime
	}
	out.Modified = out.Created
	if l.LastModifiedTime != nil {
		out.Modified = *l.LastModifiedTime
	}
	if len(l.Storage) > 0 {
		out.DatastoreID = l.Storage[0].DatastoreID
	}
	return out
}

// Items lists a library's items, oldest first.
func (k *Catalog) Items(ctx context.Context, libID string) ([]remote.Item, error) {
	ids, missing, err := listIDs(ctx, k, libID, k.items, "library/item:list",
		func(ctx context.Context) ([]string, error) { return k.c.Library().ListLibraryItems(ctx, libID) })
	if err != nil {
		return nil, err
	}
	if _, err := parallel(ctx, missing, func(ctx context.Context, id string) (remote.Item, error) {
		return k.Item(ctx, id, true)
	}); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// `ls -l` looks every entry up: rebuild the sorted list only when the ids
	// or some item's details changed.
	if v, ok := k.views[libID]; ok && v.at.Equal(ids.At) && v.gen == k.gen {
		return v.items, nil
	}
	out := make([]remote.Item, 0, len(ids.V))
	for _, id := range ids.V {
		if it, ok := k.items[id]; ok {
			out = append(out, it.V)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	k.views[libID] = itemView{at: ids.At, gen: k.gen, items: out}
	return out, nil
}

// Item returns an item's details, from the cache unless refresh is set and
// they are older than the TTL.
func (k *Catalog) Item(ctx context.Context, id string, refresh bool) (remote.Item, error) {
	k.mu.Lock()
	it, ok := k.items[id]
	k.mu.Unlock()
	if ok && (!refresh || it.Fresh(k.ttl)) {
		return it.V, nil
	}
	var li *library.Item
	err := k.c.Do(ctx, "library/item:get", id, func(ctx context.Context) (err error) {
		li, err = k.c.Library().GetLibraryItem(ctx, id)
		return err
	})
	if err != nil {
		return remote.Item{}, err
	}
	v := remote.Item{ID: li.ID, LibraryID: li.LibraryID, Name: li.Name, ContentVersion: li.ContentVersion, Size: li.Size}
	if li.CreationTime != nil {
		v.Created = *li.CreationTime
	}
	v.Modified = v.Created
	if li.LastModifiedTime != nil {
		v.Modified = *li.LastModifiedTime
	}
	k.mu.Lock()
	if old, ok := k.items[id]; !ok || old.V != v {
		k.gen++
	}
	k.items[id] = backend.Timed[remote.Item]{V: v, At: time.Now()}
	k.mu.Unlock()
	return v, nil
}

// Files lists an item's files, refreshing the item's details with them.
func (k *Catalog) Files(ctx context.Context, itemID string) (remote.Item, []remote.File, error) {
	k.mu.Lock()
	fs := k.files[itemID]
	k.mu.Unlock()
	it, err := k.Item(ctx, itemID, !fs.Fresh(k.ttl))
	if err != nil {
		return remote.Item{}, nil, err
	}
	if fs.Fresh(k.ttl) {
		return it, fs.V, nil
	}
	var list []library.File
	err = k.c.Do(ctx, "library/item/file:list", itemID, func(ctx context.Context) (err error) {
		list, err = k.c.Library().ListLibraryItemFiles(ctx, itemID)
		return err
	})
	if err != nil {
		return remote.Item{}, nil, err
	}
	files := make([]remote.File, 0, len(list))
	for _, f := range list {
		var size int64
		if f.Size != nil {
			size = *f.Size
		}
		files = append(files, remote.File{Name: f.Name, Size: size, Version: f.Version, Checksum: checksumOf(f)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	k.mu.Lock()
	k.files[itemID] = backend.Timed[[]remote.File]{V: files, At: time.Now()}
	k.mu.Unlock()
	return it, files, nil
}

// Invalidate forgets cached lists and details for a library and/or item, after a change.
func (k *Catalog) Invalidate(libID, itemID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if libID != "" || itemID == "" {
		delete(k.lists, "") // the libraries'
	}
	if libID != "" {
		delete(k.lists, libID)
		delete(k.libs, libID)
	}
	k.gen++
	if itemID != "" {
		delete(k.items, itemID)
		delete(k.files, itemID)
	}
}

// parallel runs fn over ids with a few calls in flight, as a listing of a
// large library would otherwise take N round trips in a row.
func parallel[T any](ctx context.Context, ids []string, fn func(context.Context, string) (T, error)) ([]T, error) {
	out := make([]T, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = fn(ctx, id)
		}()
	}
	wg.Wait()
	var kept []T
	for i := range ids {
		if errs[i] != nil {
			if backend.IsKind(errs[i], remote.ErrNotFound) {
				continue // deleted between the list and the get
			}
			return nil, errs[i]
		}
		kept = append(kept, out[i])
	}
	return kept, nil
}
