package fs

import (
	"context"
	"io"
	"os"
	"sort"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vspherefs/vspherefs/remote"
)

// exportFile is a file of an export folder: an OVF package file, or a
// disk's raw image. Stat waits for the file's bytes to be spooled and
// checked (sizes are exact only then): a disk's while the export goes on,
// the .ovf's and .mf's until it ends. Reads come from the spool, never from
// a lease, and fail with EIO if the export fails after all.
type exportFile struct {
	gofs.Inode
	fs   *FS
	dir  *exportDir
	name string

	mu       sync.Mutex
	lastOpen string // export ID at the last open: the same export keeps the page cache
	gate     ptGate // passthrough of package files (passthrough.go)
}

var (
	_ gofs.NodeOpener    = (*exportFile)(nil)
	_ gofs.NodeGetattrer = (*exportFile)(nil)
	_ gofs.NodeSetattrer = (*exportFile)(nil)
	_ gofs.NodeLseeker   = (*exportFile)(nil)
)

func (f *exportFile) mountPath() string { return f.Path(nil) }

func (f *exportFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*exportPTHandle); ok {
		fh = h.exportHandle
	}
	if h, ok := fh.(*exportHandle); ok {
		h.sp.attr(f.fs, &out.Attr) // an open file keeps its export
		return 0
	}
	s, err := f.dir.find(ctx, f.name)
	if err != nil {
		return toErrno(f.fs.Log, f.mountPath(), err)
	}
	s.attr(f.fs, &out.Attr)
	return 0
}

func (f *exportFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (f *exportFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	s, err := f.dir.find(ctx, f.name)
	if err != nil {
		return nil, 0, toErrno(f.fs.Log, f.mountPath(), err)
	}
	h, errno := f.open(s)
	if errno != 0 {
		return nil, 0, errno
	}
	var fl uint32
	f.mu.Lock()
	if f.lastOpen == s.id {
		fl |= fuse.FOPEN_KEEP_CACHE // the same export: keep the kernel's pages
	}
	f.lastOpen = s.id
	f.mu.Unlock()
	// A package file of an export that ended well is its bytes as they
	// are on disk, and so is a disk image once decoded: passthrough (a disk
	// served early stays read through us, so that its reads can still fail
	// if its export does). The decoded image is a version of its own for
	// the gate: another file than the stream.
	id, final := s.id, s.final != nil && s.final()
	if h.raw {
		id += rawVersion
	}
	h.mode = f.gate.admit(id, final && (!s.img || h.raw), false, false)
	if h.mode == ptBacking {
		return &exportPTHandle{exportHandle: h, backing: backing{file: h.file, count: f.fs.countPassthrough}}, fl, 0
	}
	return h, h.mode.openFlags(fl), 0
}

// rawVersion tells a disk's decoded image from its stream in the gate.
const rawVersion = "/raw"

// open opens what serves s: its spool file, a disk's decoded image, or a
// disk's stream to decode on each read.
func (f *exportFile) open(s spooled) (*exportHandle, syscall.Errno) {
	if s.img && s.raw != nil {
		if p := s.raw(); p != "" {
			if file, err := os.Open(p); err == nil {
				return &exportHandle{f: f, file: file, r: file, sp: s, size: s.size, raw: true}, 0
			}
			// Dropped meanwhile: the stream's spool says why below.
		}
	}
	file, err := os.Open(s.path)
	if err != nil {
		// The export was dropped (the VM changed) between Get and here.
		return nil, toErrno(f.fs.Log, f.mountPath(), remote.Errorf("open spool", f.mountPath(), remote.ErrStale, "%v", err))
	}
	h := &exportHandle{f: f, file: file, r: file, sp: s, size: s.size}
	if s.img {
		st, err := file.Stat()
		var img DiskImage
		if err == nil {
			img, err = f.fs.OpenDiskImage(file, st.Size())
		}
		if err != nil {
			file.Close()
			return nil, toErrno(f.fs.Log, f.mountPath(), remote.Errorf("vmdk", f.mountPath(), remote.ErrIO, "%v", err))
		}
		h.r, h.img = img, img
	}
	return h, 0
}

// exportPTHandle is a package file the kernel reads from the spool itself.
type exportPTHandle struct {
	*exportHandle
	backing
}

var _ gofs.FilePassthroughFder = (*exportPTHandle)(nil)

// Lseek answers SEEK_DATA and SEEK_HOLE for disk images from the stream's
// grain tables, so that sparse-aware tools skip the zeros; package files
// are all data.
func (f *exportFile) Lseek(ctx context.Context, fh gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	if p, ok := fh.(*exportPTHandle); ok {
		fh = p.exportHandle
	}
	h, ok := fh.(*exportHandle)
	if !ok {
		return 0, syscall.EBADF
	}
	const seekData, seekHole = 3, 4
	size := uint64(h.size)
	if off >= size {
		return 0, syscall.ENXIO
	}
	if h.raw {
		// The decoded image's own holes are the stream's: only grains
		// were written.
		n, err := unix.Seek(int(h.file.Fd()), int64(off), int(whence))
		if e, ok := err.(syscall.Errno); ok {
			return 0, e
		} else if err != nil {
			return 0, syscall.EIO
		}
		return uint64(n), 0
	}
	var ext [][2]int64
	if h.img != nil {
		ext = h.extents()
	} else {
		ext = [][2]int64{{0, h.size}}
	}
	i := sort.Search(len(ext), func(i int) bool { return uint64(ext[i][1]) > off })
	inData := i < len(ext) && uint64(ext[i][0]) <= off
	switch whence {
	case seekData:
		if inData {
			return off, 0
		}
		if i < len(ext) {
			return uint64(ext[i][0]), 0
		}
		return 0, syscall.ENXIO
	case seekHole:
		if inData {
			return uint64(ext[i][1]), 0
		}
		return off, 0
	}
	return 0, syscall.EINVAL
}

// exportHandle is an open file of an export: the spooled file itself, a
// disk's decoded image, or the raw image decoded from its stream per read.
type exportHandle struct {
	f    *exportFile
	file *os.File
	r    io.ReaderAt
	img  DiskImage // decoding per read
	raw  bool      // file is the decoded image
	sp   spooled
	size int64
	mode ptMode

	failOnce sync.Once // the export's failure is logged once per open file

	extOnce sync.Once
	ext     [][2]int64
}

var (
	_ gofs.FileReader   = (*exportHandle)(nil)
	_ gofs.FileReleaser = (*exportHandle)(nil)
)

func (h *exportHandle) extents() [][2]int64 {
	h.extOnce.Do(func() { h.ext = h.img.Allocated() })
	return h.ext
}

func (h *exportHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if err := h.sp.failed(); err != nil {
		// Served before its export ended, which then failed: nothing more
		// of it is served (the kernel may hold pages read before, which
		// were checked against the manifest).
		h.failOnce.Do(func() {
			h.f.fs.Log.Error("export failed after this file was served: reads fail from now on",
				"path", h.f.mountPath(), "err", err.Error())
		})
		return nil, syscall.EIO
	}
	if off >= h.size {
		return data(nil), 0
	}
	if rest := h.size - off; int64(len(dest)) > rest {
		dest = dest[:rest]
	}
	// A package file is read from its spool as it is (when not passed
	// through), a disk image decoded from it.
	n, err := h.r.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(h.f.fs.Log, h.f.mountPath(), remote.Errorf("read spool", h.f.mountPath(), remote.ErrIO, "%v", err))
	}
	return data(dest[:n]), 0
}

func (h *exportHandle) Release(ctx context.Context) syscall.Errno {
	h.f.gate.release(h.mode)
	h.file.Close()
	return 0
}
