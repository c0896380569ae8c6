package sim

import (
	"fmt"
	"path/filepath"
	"reflect"
	"sync"

	"github.com/vmware/govmomi/vapi/library"
)

// vcsimLibrary is our window into the vAPI simulator's content library
// state. Update sessions are ours (vcsim's write into the live item), but the
// item they commit to must stay vcsim's, so that every read path vcsim serves
// (item get, file list, storage, download sessions, OVF deploy) sees the
// committed files. vcsim keeps that state in an unexported handler whose
// fields are exported: reflection reaches them without unsafe, and vcsim's
// own mutex (the handler embeds sync.Mutex) guards them. Written against
// govmomi v0.56.0; a renamed field fails loudly in newVcsimLibrary.
type vcsimLibrary struct {
	sync.Locker               // vcsim's vAPI mutex: hold it around every call below
	libraries   reflect.Value // map[string]*content
}

func newVcsimLibrary(vapi any) (*vcsimLibrary, error) {
	lk, ok := vapi.(sync.Locker)
	v := reflect.ValueOf(vapi)
	if !ok || v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("vcsim vAPI handler is a %T, not the expected *handler", vapi)
	}
	libs := v.Elem().FieldByName("Library")
	if !libs.IsValid() || libs.Kind() != reflect.Map {
		return nil, fmt.Errorf("vcsim vAPI handler %T has no Library map", vapi)
	}
	return &vcsimLibrary{Locker: lk, libraries: libs}, nil
}

// vcsimItem is one library item as vcsim holds it.
type vcsimItem struct {
	Library *library.Library
	Item    *library.Item
	files   reflect.Value // addressable []library.File
}

// Files is the item's file list (a copy).
func (i *vcsimItem) Files() []library.File {
	return append([]library.File(nil), i.files.Interface().([]library.File)...)
}

// SetFiles replaces the item's file list.
func (i *vcsimItem) SetFiles(f []library.File) { i.files.Set(reflect.ValueOf(f)) }

// library returns a library by ID, or nil.
func (v *vcsimLibrary) library(id string) *library.Library {
	c := v.libraries.MapIndex(reflect.ValueOf(id))
	if !c.IsValid() {
		return nil
	}
	return c.Elem().FieldByName("Library").Interface().(*library.Library)
}

// libraries lists every library.
func (v *vcsimLibrary) all() []*library.Library {
	var res []*library.Library
	it := v.libraries.MapRange()
	for it.Next() {
		res = append(res, it.Value().Elem().FieldByName("Library").Interface().(*library.Library))
	}
	return res
}

// item finds an item by ID in any library, or returns nil.
func (v *vcsimLibrary) item(id string) *vcsimItem {
	it := v.libraries.MapRange()
	for it.Next() {
		c := it.Value().Elem()
		i := c.FieldByName("Item").MapIndex(reflect.ValueOf(id))
		if !i.IsValid() {
			continue
		}
		e := i.Elem()
		return &vcsimItem{
			Library: c.FieldByName("Library").Interface().(*library.Library),
			Item:    e.FieldByName("Item").Interface().(*library.Item),
			files:   e.FieldByName("File"),
		}
	}
	return nil
}

// items lists the items of a library.
func (v *vcsimLibrary) items(libID string) []*library.Item {
	c := v.libraries.MapIndex(reflect.ValueOf(libID))
	if !c.IsValid() {
		return nil
	}
	var res []*library.Item
	it := c.Elem().FieldByName("Item").MapRange()
	for it.Next() {
		res = append(res, it.Value().Elem().FieldByName("Item").Interface().(*library.Item))
	}
	return res
}

// libraryDir is where vcsim keeps a library's files (its items are subdirectories).
func (s *Server) libraryDir(l *library.Library) (string, error) {
	if len(l.Storage) == 0 {
		return "", fmt.Errorf("library %s has no storage backing", l.ID)
	}
	ds, err := s.datastoreURL(l.Storage[0].DatastoreID)
	if err != nil {
		return "", err
	}
	return filepath.Join(ds, "contentlib-"+l.ID), nil
}
