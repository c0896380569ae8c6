package remote

import "time"

// Library is a content library as the filesystem shows it.
type Library struct {
	ID, Name, Type    string
	Created, Modified time.Time
	Subscribed        bool
	DatastoreID       string
}

// Item is a library item.
type Item struct {
	ID, LibraryID, Name string
	ContentVersion      string
	Created, Modified   time.Time
	Size                int64
}

// File is a file of an item.
type File struct {
	Name    string
	Size    int64
	Version string

	Checksum string // the server's, as "ALGORITHM:hex" ("" if it gives none)
}

// VM is a virtual machine as vms/ shows it.
type VM struct {
	Ref     Ref
	Name    string
	On      bool // powered on: guest operations can work
	Windows bool // guest paths are drive letters, not "/"
}

// Snapshot is one snapshot of a VM.
type Snapshot struct {
	Name     string // as given; not unique in vSphere
	Path     string // names from the root, "/"-separated
	Ref      Ref
	Created  time.Time
	Quiesced bool
}

// Staged is a local file to commit into an item as Name.
type Staged struct {
	Name string // file name in the item
	Path string // local staged file; streamed, never read whole into memory
	// SHA256 (hex), if the stager hashed the bytes as they were written,
	// spares the commit a read of the whole file; it must be the hash of
	// exactly Size bytes of Path.
	SHA256 string
	Size   int64
}

// Ref names a managed object (a VM, a snapshot) as vSphere does; it
// converts to and from govmomi's types.ManagedObjectReference.
type Ref struct {
	Type, Value, ServerGUID string
}

// Space is a datastore's capacity and free bytes, for statfs.
type Space struct{ Capacity, Free int64 }
