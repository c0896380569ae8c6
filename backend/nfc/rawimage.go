package nfc

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/vmdk"
)

// rawImages are a finished export's disks decoded, once each, into sparse
// raw files beside their spooled streams, so that later opens of disks/
// are plain local files (FUSE passthrough) instead of an inflate per read.
// Decoding starts at the first request and runs in the background; until
// it ends, or where it cannot (no room), reads decode the stream as before.
type rawImages struct {
	mu     sync.Mutex
	images map[string]*rawImage // by the spooled .vmdk's path
}

type rawImage struct {
	file    remote.ExportedFile
	started bool        // under rawImages.mu
	path    string      // set before done
	done    atomic.Bool // the file is complete at path
}

// rawSuffix names a decoded image: the spooled stream's path plus it.
const rawSuffix = ".raw"

// rawChunk is how much of an extent one read and write move.
const rawChunk = 1 << 20

// rawReserve is the room decoding leaves free on the cache dir's
// filesystem: the greater of a twentieth of it and this.
const rawReserve = 256 << 20

// roomFor reports whether decoding need bytes leaves the reserve free on a
// filesystem of total bytes with free available.
func roomFor(need, total, free int64) bool {
	return free-need >= max(total/20, rawReserve)
}

// rawImage returns the decoded image of disk f of job j, or "" while there
// is none. The first call starts decoding it, or, while the export still
// runs (the disk served early), has it decoded when the export ends well.
func (x *Exports) rawImage(j *exportJob, f remote.ExportedFile) string {
	j.raws.mu.Lock()
	r := j.raws.images[f.Path]
	if r == nil {
		if j.raws.images == nil {
			j.raws.images = map[string]*rawImage{}
		}
		r = &rawImage{file: f}
		j.raws.images[f.Path] = r
	}
	start := !r.started && j.succeeded()
	r.started = r.started || start
	j.raws.mu.Unlock()
	if r.done.Load() {
		return r.path
	}
	if start {
		x.startDecode(j, r)
	}
	return ""
}

// decodeAsked starts decoding the disks asked for while job j ran; it has
// just ended well.
func (x *Exports) decodeAsked(j *exportJob) {
	var start []*rawImage
	j.raws.mu.Lock()
	for _, r := range j.raws.images {
		if !r.started {
			r.started = true
			start = append(start, r)
		}
	}
	j.raws.mu.Unlock()
	for _, r := range start {
		x.startDecode(j, r)
	}
}

func (x *Exports) startDecode(j *exportJob, r *rawImage) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.closed && !j.dropped {
		x.wg.Add(1) // under mu: Close sets closed before it waits
		go x.decode(j, r)
	}
}

// decode writes disk r.file's raw image as a sparse file: only the extents that
// have grains are written, the rest are holes.
func (x *Exports) decode(j *exportJob, r *rawImage) {
	defer x.wg.Done()
	f := r.file
	start := time.Now()
	log := x.log.With("export", j.label, "file", f.Name)
	need := f.Disk.Allocated
	var st unix.Statfs_t
	if err := unix.Statfs(j.dir, &st); err == nil {
		total, free := int64(st.Blocks)*st.Bsize, int64(st.Bavail)*st.Bsize
		if !roomFor(need, total, free) {
			log.Info("disk image not decoded into the spool, for lack of room: its reads decode the stream",
				"need", need, "free", free)
			return
		}
	}
	img, src, err := vmdk.OpenDiskImage(f.Path)
	if err != nil {
		log.Warn("disk image not decoded into the spool: its reads decode the stream", "err", err.Error())
		return
	}
	defer src.Close()
	out, err := os.CreateTemp(filepath.Dir(f.Path), ".decoding-*")
	if err != nil {
		log.Warn("disk image not decoded into the spool: its reads decode the stream", "err", err.Error())
		return
	}
	defer os.Remove(out.Name()) // renamed away when complete
	defer out.Close()
	if err := x.writeRaw(j, img, out); err != nil {
		if err != errRawStopped {
			log.Warn("disk image not decoded into the spool: its reads decode the stream", "err", err.Error())
		}
		return
	}
	final := f.Path + rawSuffix
	if err := os.Rename(out.Name(), final); err != nil {
		log.Warn("disk image not decoded into the spool: its reads decode the stream", "err", err.Error())
		return
	}
	r.path = final
	r.done.Store(true)
	log.Info("disk image decoded into the spool: later opens read it as a local file",
		"bytes", need, "took", time.Since(start).Round(time.Millisecond))
}

type rawStopped struct{}

func (rawStopped) Error() string { return "stopped" }

// errRawStopped: the mount is closing or the export was dropped.
var errRawStopped error = rawStopped{}

func (x *Exports) writeRaw(j *exportJob, img *vmdk.StreamImage, out *os.File) error {
	buf := make([]byte, rawChunk)
	for _, e := range img.Allocated() {
		for off := e[0]; off < e[1]; off += rawChunk {
			if x.stopped(j) {
				return errRawStopped
			}
			n := min(rawChunk, e[1]-off)
			if _, err := img.ReadAt(buf[:n], off); err != nil {
				return err
			}
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				return err
			}
		}
	}
	if err := out.Truncate(img.Size()); err != nil {
		return err
	}
	return out.Close()
}

// stopped says whether decoding should end: the mount closes, or the
// export's spool is being dropped.
func (x *Exports) stopped(j *exportJob) bool {
	if x.ctx.Err() != nil {
		return true
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return j.dropped
}
