package backend

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
)

// ExportVM is a VM as exports/ and disks/ show it.
type ExportVM struct {
	VM
	ChangeVersion string     // config.changeVersion: a new one means new disks
	Snapshots     []Snapshot // parents before children
}

// ExportTarget is what one export folder exports: a VM, or a snapshot of it.
type ExportTarget struct {
	VM       types.ManagedObjectReference
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

// ExportResult is a finished export: the package's files in the spool.
type ExportResult struct {
	ID    string // changes when the target is exported again
	Files []ExportedFile
	Done  time.Time
}

// Disks are the result's disk files, in lease order.
func (r *ExportResult) Disks() []ExportedFile {
	var d []ExportedFile
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

// DiskImageName is the raw image name of the i-th disk (disks/<vm>/).
func DiskImageName(i int) string { return fmt.Sprintf("disk-%d.img", i) }

// Exports runs the exports a mount serves: at most one job per target,
// started by the first access that needs sizes, spooled under a directory
// and kept until the target changes or the mount ends. A job holds its
// lease only while it transfers; readers are served from the spool.
type Exports struct {
	conn *Conn
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
	vms     []ExportVM
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
}

// retryAfter is how long a failed export answers with its error before the
// next access tries again (so that ls -l of a package exports once).
const retryAfter = 2 * time.Second

// NewExports serves exports over c, spooling under dir (created; removed
// at Close). ttl is how long the VM list is trusted.
func NewExports(c *Conn, dir string, ttl time.Duration) (*Exports, error) {
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
func (x *Exports) VMs(ctx context.Context) ([]ExportVM, error) {
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
		defer v.Destroy(context.WithoutCancel(ctx))
		return v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "runtime.powerState", "config.changeVersion", "snapshot"}, &list)
	})
	if err != nil {
		return nil, err
	}
	vms := make([]ExportVM, 0, len(list))
	for _, m := range list {
		v := ExportVM{VM: VM{Ref: m.Self, Name: m.Name, On: m.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn},
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
func (x *Exports) current(ctx context.Context, t ExportTarget) (ExportVM, error) {
	vms, err := x.VMs(ctx)
	if err != nil {
		return ExportVM{}, err
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
				return v, Errorf("FindSnapshot", t.Label(), ErrNotFound, "no such snapshot")
			}
		}
		return v, nil
	}
	return ExportVM{}, Errorf("FindVM", t.Label(), ErrNotFound, "no such VM")
}

// Check says whether the target can be exported now: ErrBusy, with what to
// do instead, for a powered-on VM (whose export and spool are then dropped:
// its disks change while it runs).
func (x *Exports) Check(ctx context.Context, t ExportTarget) error {
	v, err := x.current(ctx, t)
	if isKind(err, ErrNotFound) {
		x.Drop(t) // the VM or snapshot is gone: so is its spool
	}
	if err != nil {
		return err
	}
	if t.Snapshot == nil && v.On {
		x.Drop(t)
		return Errorf("ExportVm", t.Label(), ErrBusy,
			"the VM is powered on: power it off, or export a snapshot of it (mkdir exports/<vm>@<snapshot>)")
	}
	return nil
}

// Names are the file names of the target's package: from the finished
// export if there is one, else from the configuration (no export needed).
// The second result is the number of disks.
func (x *Exports) Names(ctx context.Context, t ExportTarget) ([]string, int, error) {
	if err := x.Check(ctx, t); err != nil {
		return nil, 0, err
	}
	if r, ok := x.Peek(ctx, t); ok {
		names := make([]string, len(r.Files))
		for i, f := range r.Files {
			names[i] = f.Name
		}
		return names, len(r.Disks()), nil
	}
	n, err := x.diskCount(ctx, t)
	if err != nil {
		return nil, 0, err
	}
	return PackageNames(t.Name, n), n, nil
}

// diskCount counts the target's virtual disks in its configuration.
func (x *Exports) diskCount(ctx context.Context, t ExportTarget) (int, error) {
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
			if err := pc.RetrieveOne(ctx, ref, []string{"config.hardware.device"}, &o); err != nil {
				return err
			}
			devices = o.Config.Hardware.Device
			return nil
		}
		var o mo.VirtualMachine
		if err := pc.RetrieveOne(ctx, ref, []string{"config.hardware.device"}, &o); err != nil {
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
func (x *Exports) Peek(ctx context.Context, t ExportTarget) (*ExportResult, bool) {
	v, err := x.current(ctx, t)
	if err != nil {
		return nil, false
	}
	x.mu.Lock()
	j := x.jobs[t.Key()]
	x.mu.Unlock()
	if j == nil || (t.Snapshot == nil && (v.On || j.cv != v.ChangeVersion)) {
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

// Get returns the target's export, starting it if there is none (or the
// VM changed since), and waiting for it: the sizes of the package's files
// are only known once their bytes are spooled.
func (x *Exports) Get(ctx context.Context, t ExportTarget) (*ExportResult, error) {
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
		return nil, Errorf("export", t.Label(), ErrIO, "unmounting")
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
		j = x.startLocked(t, cv)
	}
	x.mu.Unlock()
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

// Drop forgets the target's export: one running is aborted, its spool removed
// (open files keep their bytes until closed).
func (x *Exports) Drop(t ExportTarget) {
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

func (x *Exports) startLocked(t ExportTarget, cv string) *exportJob {
	x.seq++
	safe := strings.NewReplacer("/", "_", "@", "_").Replace(t.Key())
	j := &exportJob{key: t.Key(), label: t.Label(), cv: cv, done: make(chan struct{}),
		id:  fmt.Sprintf("%s#%d", t.Key(), x.seq),
		dir: filepath.Join(x.dir, fmt.Sprintf("%d-%s", x.seq, safe))}
	var ctx context.Context
	ctx, j.cancel = context.WithCancel(x.ctx)
	x.jobs[j.key] = j
	x.wg.Add(1)
	go x.run(ctx, j, t)
	return j
}

// run exports a target into its job's spool directory.
func (x *Exports) run(ctx context.Context, j *exportJob, t ExportTarget) {
	defer x.wg.Done()
	defer j.cancel()
	start := time.Now()
	x.log.Info("export started: one lease, disks spooled, then served from the spool", "export", j.label, "spool", j.dir)
	req := ExportRequest{VM: t.VM, Name: t.Name, Dir: j.dir, Progress: j.progress(x.log), Stall: x.conn.cfg.Timeout}
	if t.Snapshot != nil {
		ref := t.Snapshot.Ref
		req.Snapshot, req.SnapshotRef = t.Snapshot.Name, &ref
	}
	var files []ExportedFile
	err := x.conn.WithLogin(ctx, func(vc *vim25.Client) (err error) {
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
func (x *Exports) CreateSnapshot(ctx context.Context, vm types.ManagedObjectReference, name string) error {
	defer x.Invalidate()
	return x.conn.WithLogin(ctx, func(vc *vim25.Client) error { return CreateSnapshot(ctx, vc, vm, name) })
}

// RemoveSnapshot drops a snapshot's export and removes the snapshot.
func (x *Exports) RemoveSnapshot(ctx context.Context, t ExportTarget) error {
	if t.Snapshot == nil {
		return Errorf("RemoveSnapshot", t.Label(), ErrInvalid, "not a snapshot")
	}
	x.Drop(t)
	defer x.Invalidate()
	return x.conn.WithLogin(ctx, func(vc *vim25.Client) error {
		return RemoveSnapshotRef(ctx, vc, t.Snapshot.Ref, t.Label())
	})
}
