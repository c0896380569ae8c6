package remote

import (
	"fmt"
	"time"
)

// ExportVM is a VM as exports/ and disks/ show it.
type ExportVM struct {
	VM
	ChangeVersion string     // config.changeVersion: a new one means new disks
	Snapshots     []Snapshot // parents before children
}

// ExportTarget is what one export folder exports: a VM, or a snapshot of it.
type ExportTarget struct {
	VM       Ref
	Name     string    // the VM's name, which is the package's name
	Snapshot *Snapshot // nil: the VM itself, which must be powered off
}

// Key identifies the target's content: the VM, or the snapshot.
func (t ExportTarget) Key() string {
	if t.Snapshot == nil {
		return t.VM.Value
	}
	return t.VM.Value + "@" + t.Snapshot.Ref.Value
}

// Label names the target in logs and errors: vm or vm@snapshot.
func (t ExportTarget) Label() string {
	if t.Snapshot == nil {
		return t.Name
	}
	return t.Name + "@" + t.Snapshot.Name
}

// DiskImageName is the raw image name of the i-th disk (disks/<vm>/).
func DiskImageName(i int) string { return fmt.Sprintf("disk-%d.img", i) }

// SpooledFile is a file of an export that can be read from the spool: of
// a finished export, or a disk served while its export goes on.
type SpooledFile struct {
	ExportedFile
	ExportID string // changes when the target is exported again
	// Failed, if set, is the export's error once it has failed (nil until then).
	Failed func() error
	// Succeeded, if set, says whether the export has ended well.
	Succeeded func() bool
	// RawImage, set for the disks, is the path of the disk's raw image
	// decoded into a sparse file of the spool, or "" while it is not (yet):
	// the first call starts decoding, once the export has ended well.
	RawImage func() string
}

// Final reports whether the file's export has ended well (complete, every
// disk checked): its spooled bytes are then served as they are for good.
func (f SpooledFile) Final() bool { return f.Succeeded != nil && f.Succeeded() }

// Err is the export's error if it has failed since the file was served
// (a disk can be served before its export ends): from then on the file
// must not be read, so that nothing is served from an export that failed.
func (f SpooledFile) Err() error {
	if f.Failed == nil {
		return nil
	}
	return f.Failed()
}

// FileMatch picks a file of an export: disk is the file's index among the
// disks in lease order, -1 for the .ovf and .mf.
type FileMatch func(disk int, f ExportedFile) bool

// ExportedFile is one file of an exported OVF package, complete in the spool.
type ExportedFile struct {
	Name string // as govc export.ovf names it
	Path string // in the spool directory
	Size int64
	Disk *ExportedDisk // set for the disks
	// Ready is when the file could first be served: a disk once spooled
	// and checked against the lease's manifest, the .ovf and .mf at the end.
	Ready time.Time
}

// ExportedDisk describes an exported disk.
type ExportedDisk struct {
	DeviceKey string // the lease's device key
	Capacity  int64  // bytes: the size of its raw image (see OpenStreamImage)
	Allocated int64  // bytes of the raw image that have grains; the rest reads as zeros
}
