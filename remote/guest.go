package remote

import "time"

// GuestFileType is what a guest path is.
type GuestFileType int

const (
	GuestFile GuestFileType = iota
	GuestDir
	GuestSymlink
)

// GuestStat is a guest file's attributes, as the guest reports them.
type GuestStat struct {
	Name   string // base name
	Type   GuestFileType
	Size   int64
	Mode   uint32 // permission bits (07777); 0 if the guest does not say
	UID    int64  // -1 if the guest does not say (Windows)
	GID    int64
	Mtime  time.Time
	Atime  time.Time
	Target string // symlink target

	// Stale is the backend's note that it changed this directory's
	// contents, so its mtime must be read again; fs never sets it.
	Stale bool
}

// GuestAttr are attributes to set; nil fields are left as they are. A mode
// of 0 cannot be set: the API reads 0 as "unset".
type GuestAttr struct {
	Mode         *uint32
	UID, GID     *int32
	Mtime, Atime *time.Time
}

// Apply sets on s what a sets, as a POSIX guest keeps it.
func (a GuestAttr) Apply(s *GuestStat) {
	if a.Mode != nil {
		s.Mode = *a.Mode & 0o7777
	}
	if a.UID != nil {
		s.UID = int64(*a.UID)
	}
	if a.GID != nil {
		s.GID = int64(*a.GID)
	}
	if a.Mtime != nil {
		s.Mtime = *a.Mtime
	}
	if a.Atime != nil {
		s.Atime = *a.Atime
	}
}

// Empty says whether a sets nothing.
func (a GuestAttr) Empty() bool {
	return a.Mode == nil && a.UID == nil && a.GID == nil && a.Mtime == nil && a.Atime == nil
}
