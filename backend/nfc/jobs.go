package nfc

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/status"
)

// ExportResult is a finished export: the package's files in the spool.
type ExportResult struct {
	ID    string // changes when the target is exported again
	Files []remote.ExportedFile
	Done  time.Time
}

// Disks are the result's disk files, in lease order.
func (r *ExportResult) Disks() []remote.ExportedFile {
	var d []remote.ExportedFile
	for _, f := range r.Files {
		if f.Disk != nil {
			d = append(d, f)
		}
	}
	return d
}

// PackageNames are the file names `govc export.ovf` gives a VM called name
// with the given number of disks: name.ovf, one vmdk per disk, name.mf.
// The vmdk names are what vCenter's leases call disks (disk-N.vmdk),
// prefixed as govc does; the export itself has the final word.
func PackageNames(name string, disks int) []string {
	names := []string{name + ".ovf"}
	for i := range disks {
		d := fmt.Sprintf("disk-%d.vmdk", i)
		if !strings.HasPrefix(d, name) {
			d = name + "-" + d
		}
		names = append(names, d)
	}
	return append(names, name+".mf")
}

// Exports runs the exports a mount serves: at most one job per target,
// started by the first access that needs sizes, spooled under a directory
// and kept until the target changes or the mount ends. A job holds its
// lease only while it transfers; readers are served from the spool.
type Exports struct {
	// Transfers bounds disk transfers per host across the mount's exports;
	// set before use (nil: one disk at a time).
	Transfers *Transfers

	conn *backend.Conn
	dir  string
	ttl  time.Duration
	log  *slog.Logger

	ctx    context.Context // cancelled at Close: every job aborts
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	jobs    map[string]*exportJob
	seq     int
	vms     []remote.ExportVM
	vmsAt   time.Time
	layouts map[string]layout // target key -> disk count, from the configuration
}

type layout struct {
	disks int
	cv    string // the VM's changeVersion it was read at ("" for snapshots)
}

// exportJob is one export of a target into its own spool directory.
type exportJob struct {
	key, label string
	id         string
	cv         string // the VM's changeVersion when started
	dir        string
	cancel     context.CancelFunc
	done       chan struct{} // closed when res or err is set

	res      ExportResult
	err      error
	failedAt time.Time

	// under Exports.mu
	finished, dropped bool

	lastLog time.Time // Progress is called one at a time

	// Disks served before the export ends: spooled and checked against
	// their own manifest entries (by index in lease order). wake is closed
	// and replaced whenever one is added.
	readyMu sync.Mutex
	ready   map[int]remote.ExportedFile
	wake    chan struct{}

	raws rawImages // its disks decoded, once it has ended well (rawimage.go)
}

// diskReady makes a disk servable before the export ends.
func (j *exportJob) diskReady(i int, f remote.ExportedFile) {
	j.readyMu.Lock()
	j.ready[i] = f
	close(j.wake)
	j.wake = make(chan struct{})
	j.readyMu.Unlock()
}

// failed is the job's error once it has ended in one, else nil.
func (j *exportJob) failed() error {
	select {
	case <-j.done:
		return j.err
	default:
		return nil
	}
}

// succeeded reports whether the job has ended well (complete, every disk
// checked): its spooled files are then served as they are for good.
func (j *exportJob) succeeded() bool {
	select {
	case <-j.done:
		return j.err == nil
	default:
		return false
	}
}

// retryAfter is how long a failed export answers with its error before the
// next access tries again (so that ls -l of a package exports once).
const retryAfter = 2 * time.Second

// NewExports serves exports over c, spooling under dir (created; removed
// at Close). ttl is how long the VM list is trusted.
func NewExports(c *backend.Conn, dir string, ttl time.Duration) (*Exports, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Exports{conn: c, dir: dir, ttl: ttl, log: c.Log(), ctx: ctx, cancel: cancel,
		jobs: map[string]*exportJob{}, layouts: map[string]layout{}}, nil
}

// Close aborts the exports still running (their leases are aborted), waits
// for them, and removes the spool. Later calls fail.
func (x *Exports) Close() {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return
	}
	x.closed = true
	x.mu.Unlock()
	x.cancel()
	x.wg.Wait()
	_ = os.RemoveAll(x.dir)
}

// VMs lists the VMs, templates included (they export as VMs do), with
// their snapshots, by name; the list is kept for the TTL.
func (x *Exports) VMs(ctx context.Context) ([]remote.ExportVM, error) {
	x.mu.Lock()
	if x.vms != nil && time.Since(x.vmsAt) < x.ttl {
		vms := x.vms
		x.mu.Unlock()
		return vms, nil
	}
	x.mu.Unlock()
	var list []mo.VirtualMachine
	err := x.conn.Do(ctx, "RetrieveProperties", "VirtualMachine", func(ctx context.Context) error {
		vc := x.conn.Vim()
		v, err := view.NewManager(vc).CreateContainerView(ctx, vc.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
		if err != nil {
			return err
		}
		defer backend.DestroyView(ctx, v)
		return v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "runtime.powerState", "config.changeVersion", "snapshot"}, &list)
	})
	if err != nil {
		return nil, err
	}
	vms := make([]remote.ExportVM, 0, len(list))
	for _, m := range list {
		v := remote.ExportVM{VM: remote.VM{Ref: remote.Ref(m.Self), Name: m.Name, On: m.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn},
			Snapshots: flattenSnapshots(m.Snapshot)}
		if m.Config != nil {
			v.ChangeVersion = m.Config.ChangeVersion
		}
		vms = append(vms, v)
	}
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	x.mu.Lock()
	x.vms, x.vmsAt = vms, time.Now()
	x.mu.Unlock()
	return vms, nil
}

// Invalidate forgets the VM list (after a snapshot is made or removed).
func (x *Exports) Invalidate() {
	x.mu.Lock()
	x.vms = nil
	x.mu.Unlock()
}

// current finds the target's VM (and snapshot) in the VM list.
func (x *Exports) current(ctx context.Context, t remote.ExportTarget) (remote.ExportVM, error) {
	vms, err := x.VMs(ctx)
	if err != nil {
		return remote.ExportVM{}, err
	}
	for _, v := range vms {
		if v.Ref != t.VM {
			continue
		}
		if t.Snapshot != nil {
			found := false
			for _, s := range v.Snapshots {
				found = found || s.Ref == t.Snapshot.Ref
			}
			if !found {
				return v, remote.Errorf("FindSnapshot", t.Label(), remote.ErrNotFound, "no such snapshot")
			}
		}
		return v, nil
	}
	return remote.ExportVM{}, remote.Errorf("FindVM", t.Label(), remote.ErrNotFound, "no such VM")
}

// Check says whether the target can be exported now: ErrBusy, with what to
// do instead, for a powered-on VM (whose export and spool are then dropped:
// its disks change while it runs).
func (x *Exports) Check(ctx context.Context, t remote.ExportTarget) error {
	v, err := x.current(ctx, t)
	if backend.IsKind(err, remote.ErrNotFound) {
		x.Drop(t) // the VM or snapshot is gone: so is its spool
	}
	if err != nil {
		return err
	}
	if t.Snapshot == nil && v.On {
		x.Drop(t)
		return remote.Errorf("ExportVm", t.Label(), remote.ErrBusy,
			"the VM is powered on: power it off, or export a snapshot of it (mkdir exports/<vm>@<snapshot>)")
	}
	return nil
}

// Names are the file names of the target's package: from the finished
// export if there is one, else from the configuration (no export needed).
// The disks come first, in lease order, then the .ovf and the .mf: the
// disks are served as they are spooled, the others only at the end, so
// that is the order to copy them in. The second result is the number of
// disks.
func (x *Exports) Names(ctx context.Context, t remote.ExportTarget) ([]string, int, error) {
	if err := x.Check(ctx, t); err != nil {
		return nil, 0, err
	}
	if r, ok := x.Peek(ctx, t); ok {
		var disks, rest []string
		for _, f := range r.Files {
			if f.Disk != nil {
				disks = append(disks, f.Name)
			} else {
				rest = append(rest, f.Name)
			}
		}
		return append(disks, rest...), len(disks), nil
	}
	n, err := x.diskCount(ctx, t)
	if err != nil {
		return nil, 0, err
	}
	p := PackageNames(t.Name, n) // .ovf, disks, .mf
	return append(append(p[1:n+1:n+1], p[0]), p[n+1]), n, nil
}

// diskCount counts the target's virtual disks in its configuration.
func (x *Exports) diskCount(ctx context.Context, t remote.ExportTarget) (int, error) {
	cv := ""
	ref := t.VM
	if t.Snapshot != nil {
		ref = t.Snapshot.Ref
	} else {
		v, err := x.current(ctx, t)
		if err != nil {
			return 0, err
		}
		cv = v.ChangeVersion
	}
	x.mu.Lock()
	l, ok := x.layouts[t.Key()]
	x.mu.Unlock()
	if ok && l.cv == cv {
		return l.disks, nil
	}
	var devices []types.BaseVirtualDevice
	err := x.conn.Do(ctx, "RetrieveProperties", t.Label(), func(ctx context.Context) error {
		pc := property.DefaultCollector(x.conn.Vim())
		if t.Snapshot != nil {
			var o mo.VirtualMachineSnapshot
			if err := pc.RetrieveOne(ctx, types.ManagedObjectReference(ref), []string{"config.hardware.device"}, &o); err != nil {
				return err
			}
			devices = o.Config.Hardware.Device
			return nil
		}
		var o mo.VirtualMachine
		if err := pc.RetrieveOne(ctx, types.ManagedObjectReference(ref), []string{"config.hardware.device"}, &o); err != nil {
			return err
		}
		if o.Config != nil {
			devices = o.Config.Hardware.Device
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range devices {
		if _, ok := d.(*types.VirtualDisk); ok {
			n++
		}
	}
	x.mu.Lock()
	x.layouts[t.Key()] = layout{disks: n, cv: cv}
	x.mu.Unlock()
	return n, nil
}

// Peek returns the target's finished export, if there is one and it is
// still current; it never starts one.
func (x *Exports) Peek(ctx context.Context, t remote.ExportTarget) (*ExportResult, bool) {
	j := x.peekJob(ctx, t)
	if j == nil {
		return nil, false
	}
	select {
	case <-j.done:
		if j.err == nil {
			return &j.res, true
		}
	default:
	}
	return nil, false
}

// peekJob is the target's current export job, running or finished, if any.
func (x *Exports) peekJob(ctx context.Context, t remote.ExportTarget) *exportJob {
	v, err := x.current(ctx, t)
	if err != nil {
		return nil
	}
	x.mu.Lock()
	j := x.jobs[t.Key()]
	x.mu.Unlock()
	if j == nil || (t.Snapshot == nil && (v.On || j.cv != v.ChangeVersion)) {
		return nil
	}
	return j
}

// Get returns the target's export, starting it if there is none (or the
// VM changed since), and waiting for it: the sizes of the package's files
// are only known once their bytes are spooled.
func (x *Exports) Get(ctx context.Context, t remote.ExportTarget) (*ExportResult, error) {
	j, err := x.job(ctx, t)
	if err != nil {
		return nil, err
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if j.err != nil {
		return nil, j.err
	}
	return &j.res, nil
}

// File returns the file of the target's export that match picks, starting
// the export if there is none (or the VM changed since), and waiting only
// as long as that file needs: a disk as soon as it is spooled and checked
// against its entry in the lease's manifest (while the lease goes on for
// the others), the .ovf and .mf (and a disk the manifest had no entry for
// yet) once the whole export is done. ErrNotFound if match picks nothing.
func (x *Exports) File(ctx context.Context, t remote.ExportTarget, match remote.FileMatch) (remote.SpooledFile, error) {
	j, err := x.job(ctx, t)
	if err != nil {
		return remote.SpooledFile{}, err
	}
	for {
		f, ok, wake := j.find(match)
		if ok {
			return x.withRaw(j, f), nil
		}
		if wake == nil { // finished
			if err := j.failed(); err != nil {
				return remote.SpooledFile{}, err
			}
			return remote.SpooledFile{}, remote.Errorf("export", t.Label(), remote.ErrNotFound, "no such file in the export")
		}
		select {
		case <-wake:
		case <-j.done:
		case <-ctx.Done():
			return remote.SpooledFile{}, ctx.Err()
		}
	}
}

// FileReady is File without starting an export or waiting: the file if it
// can be served now.
func (x *Exports) FileReady(ctx context.Context, t remote.ExportTarget, match remote.FileMatch) (remote.SpooledFile, bool) {
	j := x.peekJob(ctx, t)
	if j == nil {
		return remote.SpooledFile{}, false
	}
	f, ok, _ := j.find(match)
	return x.withRaw(j, f), ok
}

// withRaw gives a disk its decoded image (once its export has ended well).
func (x *Exports) withRaw(j *exportJob, f remote.SpooledFile) remote.SpooledFile {
	if f.Disk != nil {
		ef := f.ExportedFile
		f.RawImage = func() string { return x.rawImage(j, ef) }
	}
	return f
}

// find looks for a servable file: in the result once the job is done (an
// error if it failed), else among the disks served early; wake, when the
// job still runs, is closed at the next change.
func (j *exportJob) find(match remote.FileMatch) (f remote.SpooledFile, ok bool, wake <-chan struct{}) {
	if j.failed() != nil {
		return remote.SpooledFile{}, false, nil
	}
	select {
	case <-j.done:
		disk := 0
		for _, ef := range j.res.Files {
			i := -1
			if ef.Disk != nil {
				i, disk = disk, disk+1
			}
			if match(i, ef) {
				return remote.SpooledFile{ExportedFile: ef, ExportID: j.id, Failed: j.failed, Succeeded: j.succeeded}, true, nil
			}
		}
		return remote.SpooledFile{}, false, nil
	default:
	}
	j.readyMu.Lock()
	defer j.readyMu.Unlock()
	for i, ef := range j.ready {
		if match(i, ef) {
			return remote.SpooledFile{ExportedFile: ef, ExportID: j.id, Failed: j.failed, Succeeded: j.succeeded}, true, nil
		}
	}
	return remote.SpooledFile{}, false, j.wake
}

// job finds the target's current export job or starts one.
func (x *Exports) job(ctx context.Context, t remote.ExportTarget) (*exportJob, error) {
	if err := x.Check(ctx, t); err != nil {
		return nil, err
	}
	v, err := x.current(ctx, t)
	if err != nil {
		return nil, err
	}
	cv := ""
	if t.Snapshot == nil {
		cv = v.ChangeVersion
	}
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil, remote.Errorf("export", t.Label(), remote.ErrIO, "unmounting")
	}
	j := x.jobs[t.Key()]
	if j != nil && j.cv != cv {
		x.log.Info("VM changed since its export: exporting it again", "export", t.Label())
		x.dropLocked(j)
		j = nil
	}
	if j != nil && j.finished && j.err != nil && time.Since(j.failedAt) > retryAfter {
		x.dropLocked(j)
		j = nil
	}
	if j == nil {
		j = x.startLocked(t, cv, status.Origin(ctx))
	}
	x.mu.Unlock()
	return j, nil
}

// Drop forgets the target's export: one running is aborted, its spool removed
// (open files keep their bytes until closed).
func (x *Exports) Drop(t remote.ExportTarget) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if j := x.jobs[t.Key()]; j != nil {
		x.dropLocked(j)
	}
}

func (x *Exports) dropLocked(j *exportJob) {
	delete(x.jobs, j.key)
	j.dropped = true
	j.cancel()
	if j.finished {
		_ = os.RemoveAll(j.dir)
	}
}

// origin is the mount folder the export is for (status.WithOrigin), shown
// by `vspherefs status` for its lease and disk transfers.
func (x *Exports) startLocked(t remote.ExportTarget, cv, origin string) *exportJob {
	x.seq++
	safe := strings.NewReplacer("/", "_", "@", "_").Replace(t.Key())
	j := &exportJob{key: t.Key(), label: t.Label(), cv: cv, done: make(chan struct{}),
		ready: map[int]remote.ExportedFile{}, wake: make(chan struct{}),
		id:  fmt.Sprintf("%s#%d", t.Key(), x.seq),
		dir: filepath.Join(x.dir, fmt.Sprintf("%d-%s", x.seq, safe))}
	var ctx context.Context
	ctx, j.cancel = context.WithCancel(status.WithOrigin(x.ctx, origin))
	x.jobs[j.key] = j
	x.wg.Add(1)
	go x.run(ctx, j, t)
	return j
}

// run exports a target into its job's spool directory.
func (x *Exports) run(ctx context.Context, j *exportJob, t remote.ExportTarget) {
	defer x.wg.Done()
	defer j.cancel()
	start := time.Now()
	x.log.Info("export started: one lease, disks spooled, then served from the spool", "export", j.label, "spool", j.dir)
	step := x.conn.Step(ctx, "export lease", j.label, "waiting for lease")
	defer step.End()
	req := ExportRequest{VM: types.ManagedObjectReference(t.VM), Name: t.Name, Dir: j.dir, Progress: j.progress(x.log), Stall: x.conn.Config.Timeout, Transfers: x.Transfers,
		LeaseReady: func() { step.SetState("streaming disks") },
		DiskReady: func(i int, f remote.ExportedFile) {
			x.log.Info("disk spooled and checked against the lease's manifest: served while the export goes on",
				"export", j.label, "file", f.Name, "bytes", f.Size)
			j.diskReady(i, f)
		}}
	if t.Snapshot != nil {
		ref := t.Snapshot.Ref
		req.Snapshot, req.SnapshotRef = t.Snapshot.Name, (*types.ManagedObjectReference)(&ref)
	}
	var files []remote.ExportedFile
	attempt := 0
	err := x.conn.WithLogin(ctx, func(vc *vim25.Client) (err error) {
		// A second attempt (after a lost session) spools afresh into its
		// own folder, and its disks are served only once checked in turn:
		// a disk opened from the first stays as it was checked.
		if attempt++; attempt > 1 {
			req.Dir = filepath.Join(j.dir, fmt.Sprintf("retry-%d", attempt))
			j.readyMu.Lock()
			j.ready = map[int]remote.ExportedFile{}
			j.readyMu.Unlock()
		}
		files, err = Export(ctx, vc, req)
		return err
	})
	if err == nil {
		var bytes int64
		for _, f := range files {
			bytes += f.Size
		}
		j.res = ExportResult{ID: j.id, Files: files, Done: time.Now()}
		x.log.Info("export complete: lease released, reads come from the spool", "export", j.label,
			"files", len(files), "bytes", bytes, "took", time.Since(start).Round(time.Millisecond))
	} else {
		j.err, j.failedAt = err, time.Now()
		x.log.Error("export failed: lease aborted", "export", j.label, "err", err.Error())
	}
	x.mu.Lock()
	j.finished = true
	if err != nil || j.dropped {
		_ = os.RemoveAll(j.dir)
	}
	x.mu.Unlock()
	close(j.done)
	if err == nil {
		x.decodeAsked(j) // the disks of disks/ opened while it ran
	}
}

// progress logs an export's progress, at most once a second and at the end.
func (j *exportJob) progress(log *slog.Logger) func(ExportProgress) {
	return func(p ExportProgress) {
		now := time.Now()
		if now.Sub(j.lastLog) < time.Second && p.Done < p.Total {
			return
		}
		j.lastLog = now
		pct := int64(0)
		if p.Total > 0 {
			pct = min(100, 100*p.Done/p.Total)
		}
		log.Info("export progress", "export", j.label, "percent", pct, "bytes", p.Done, "total", p.Total)
	}
}

// CreateSnapshot makes a snapshot of a VM for exports/<vm>@<name> (no
// memory, quiesced when VMware Tools run).
func (x *Exports) CreateSnapshot(ctx context.Context, vm remote.Ref, name string) error {
	defer x.Invalidate()
	return x.conn.WithLogin(ctx, func(vc *vim25.Client) error {
		return CreateSnapshot(ctx, vc, types.ManagedObjectReference(vm), name)
	})
}

// RemoveSnapshot drops a snapshot's export and removes the snapshot.
func (x *Exports) RemoveSnapshot(ctx context.Context, t remote.ExportTarget) error {
	if t.Snapshot == nil {
		return remote.Errorf("RemoveSnapshot", t.Label(), remote.ErrInvalid, "not a snapshot")
	}
	x.Drop(t)
	defer x.Invalidate()
	return x.conn.WithLogin(ctx, func(vc *vim25.Client) error {
		return RemoveSnapshotRef(ctx, vc, types.ManagedObjectReference(t.Snapshot.Ref), t.Label())
	})
}
