package sim

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// DefaultLeaseTimeout is vCenter's lease timeout (HttpNfcLeaseInfo.leaseTimeout).
const DefaultLeaseTimeout = 300 * time.Second

// Exports holds the export leases (ExportVm, ExportSnapshot) that we serve in
// place of vcsim's, with the states of the HttpNfcLease reference (seed 003):
// initializing while the disks are prepared, ready, then done (Complete) or
// error (Abort, or no HttpNfcLeaseProgress for leaseTimeout). A lease that
// ends cuts off its transfers.
type Exports struct {
	s *Server

	mu      sync.Mutex
	leases  map[string]*exportLease
	timeout time.Duration

	created  atomic.Int64
	timedOut atomic.Int64
	served   atomic.Int64
	active   atomic.Int64 // disk GETs being served now
	peak     atomic.Int64 // the most served at once since ResetPeak
	firstGet atomic.Int64 // unix nanoseconds of the first disk transfer served
	rate     atomic.Int64 // bytes/s per transfer; 0: no limit
	corrupt  atomic.Int32 // Corrupt: -1 all disks, n+1 disk n only, 0 none
	sums     atomic.Int32 // ManifestChecksums: how SetManifestChecksumType is taken
	late     atomic.Bool  // LateManifest
}

// LateManifest makes HttpNfcLeaseGetManifest give no entries until every
// disk of the lease has been sent to its end (the seed does not say when a
// manifest is complete): a client then checks all but the last disk at the
// end of the export.
func (x *Exports) LateManifest(on bool) { x.late.Store(on) }

// ManifestChecksums is how a server takes HttpNfcLeaseSetManifestChecksumType
// (seed 003: since vSphere API 6.7).
type ManifestChecksums int32

const (
	ChecksumsAsked   ManifestChecksums = iota // the manifest gives what the client asked for
	ChecksumsUnknown                          // the method does not exist (before 6.7): MethodNotFound
	ChecksumsIgnored                          // the call succeeds, the manifest stays SHA-1
)

// SetManifestChecksums sets how leases take SetManifestChecksumType.
func (x *Exports) SetManifestChecksums(m ManifestChecksums) { x.sums.Store(int32(m)) }

// Throttle limits each disk transfer to rate bytes per second (0: no limit),
// so that tests can make an export outlast the lease timeout.
func (x *Exports) Throttle(rate int64) { x.rate.Store(rate) }

// Corrupt makes transfers serve one wrong byte (past the first MiB), as a
// damaged transfer would: the disk then disagrees with GetManifest.
func (x *Exports) Corrupt(on bool) {
	if on {
		x.corrupt.Store(-1)
	} else {
		x.corrupt.Store(0)
	}
}

// CorruptDisk is Corrupt for the transfers of disk n (disk-n.vmdk) only.
func (x *Exports) CorruptDisk(n int) { x.corrupt.Store(int32(n) + 1) }

func (x *Exports) corrupts(f *leaseFile) bool {
	c := x.corrupt.Load()
	return c == -1 || (c > 0 && f.name == fmt.Sprintf("disk-%d.vmdk", c-1))
}

func newExports(s *Server, timeout time.Duration) *Exports {
	if timeout <= 0 {
		timeout = DefaultLeaseTimeout
	}
	return &Exports{s: s, leases: map[string]*exportLease{}, timeout: timeout}
}

// SetLeaseTimeout sets the timeout of leases created from now on.
func (x *Exports) SetLeaseTimeout(d time.Duration) {
	x.mu.Lock()
	x.timeout = d
	x.mu.Unlock()
}

// LeasesCreated counts the export leases created so far.
func (x *Exports) LeasesCreated() int { return int(x.created.Load()) }

// LeasesTimedOut counts the leases that went to error for want of progress.
func (x *Exports) LeasesTimedOut() int { return int(x.timedOut.Load()) }

// BytesServed counts the disk bytes sent through export leases.
func (x *Exports) BytesServed() int64 { return x.served.Load() }

// PeakTransfers is the most disk GETs served at once since ResetPeak.
func (x *Exports) PeakTransfers() int { return int(x.peak.Load()) }

// ResetPeak starts PeakTransfers again from the transfers running now.
func (x *Exports) ResetPeak() { x.peak.Store(x.active.Load()) }

func (x *Exports) transferStarted() {
	n := x.active.Add(1)
	for p := x.peak.Load(); n > p && !x.peak.CompareAndSwap(p, n); p = x.peak.Load() {
	}
}

// FirstTransfer is when the first disk transfer started, or the zero time:
// tests measure a stall from there, not from a lease prepared under load.
func (x *Exports) FirstTransfer() time.Time {
	if n := x.firstGet.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// ActiveLeases counts the leases still initializing or ready: the ones that
// a well-behaved client must have completed or aborted when it is done.
func (x *Exports) ActiveLeases() int {
	n := 0
	for _, l := range x.all() {
		if s := l.state(); s == types.HttpNfcLeaseStateInitializing || s == types.HttpNfcLeaseStateReady {
			n++
		}
	}
	return n
}

func (x *Exports) all() []*exportLease {
	x.mu.Lock()
	defer x.mu.Unlock()
	list := make([]*exportLease, 0, len(x.leases))
	for _, l := range x.leases {
		list = append(list, l)
	}
	return list
}

func (x *Exports) lease(id string) *exportLease {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.leases[id]
}

func (x *Exports) close() {
	for _, l := range x.all() {
		bg := x.s.bgContext()
		bg.WithLock(l, func() {
			if l.timer != nil {
				l.timer.Stop()
			}
			l.cancel()
		})
	}
}

// exportLease is an HttpNfcLease managed object. Everything in it is guarded
// by vcsim's lock on the object: SOAP calls hold it, and our own goroutines
// take it with a bgContext.
type exportLease struct {
	mo.HttpNfcLease

	x        *Exports
	files    []*leaseFile
	timeout  time.Duration
	deadline time.Time
	timer    *time.Timer
	ctx      context.Context // done when the lease leaves ready: transfers stop
	cancel   context.CancelFunc
	// sums is the checksum type asked per device key; transferred says a
	// transfer started, after which the types can no longer be set.
	sums        map[string]types.HttpNfcLeaseManifestEntryChecksumType
	transferred bool
}

// leaseFile is one disk of a lease, served as disk-N.vmdk.
type leaseFile struct {
	name   string
	disk   vmDisk
	stream *diskStream // set once initialized
	sent   atomic.Bool // its last byte was sent
}

// newLease creates a lease for the disks of vm and starts preparing them.
func (x *Exports) newLease(ctx *simulator.Context, vm types.ManagedObjectReference, disks []vmDisk) *exportLease {
	x.mu.Lock()
	timeout := x.timeout
	x.mu.Unlock()
	n := x.created.Add(1)
	l := &exportLease{
		HttpNfcLease: mo.HttpNfcLease{
			State: types.HttpNfcLeaseStateInitializing,
			Mode:  string(types.HttpNfcLeaseModePushOrGet),
		},
		x:       x,
		timeout: timeout,
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.Self = types.ManagedObjectReference{Type: "HttpNfcLease", Value: fmt.Sprintf("export-lease-%d", n)}
	for i, d := range disks {
		l.files = append(l.files, &leaseFile{name: fmt.Sprintf("disk-%d.vmdk", i), disk: d})
	}
	ctx.Map.Put(l)
	x.mu.Lock()
	x.leases[l.Self.Value] = l
	x.mu.Unlock()
	go l.initialize(vm)
	return l
}

// initialize generates the disks' streams (slow the first time: that is the
// initializing state a client waits through), then makes the lease ready.
func (l *exportLease) initialize(vm types.ManagedObjectReference) {
	bg := l.x.s.bgContext()
	var capacity int64
	for i, f := range l.files {
		st, err := l.x.s.Disks.stream(vm.Value, f.disk)
		if err != nil {
			bg.WithLock(l, func() {
				if l.State == types.HttpNfcLeaseStateInitializing {
					l.end(bg, types.HttpNfcLeaseStateError, &types.LocalizedMethodFault{
						Fault: &types.SystemError{Reason: err.Error()}, LocalizedMessage: err.Error()})
				}
			})
			return
		}
		capacity += f.disk.capacity
		bg.WithLock(l, func() {
			f.stream = st
			bg.Update(l, []types.PropertyChange{{Name: "initializeProgress", Val: int32(100 * (i + 1) / len(l.files))}})
		})
	}
	base := url.URL{Scheme: "https", Host: l.x.s.URL.Host}
	info := &types.HttpNfcLeaseInfo{
		Lease:                 l.Self,
		Entity:                vm,
		TotalDiskCapacityInKB: capacity / 1024,
		LeaseTimeout:          int32((l.timeout + time.Second - 1) / time.Second),
	}
	for _, f := range l.files {
		u := base
		u.Path = "/nfc/" + l.Self.Value + "/" + f.name
		info.DeviceUrl = append(info.DeviceUrl, types.HttpNfcLeaseDeviceUrl{
			Key:       f.disk.deviceKey,
			ImportKey: f.disk.deviceKey,
			Url:       u.String(),
			TargetId:  f.name,
			Disk:      types.NewBool(true),
			FileSize:  f.stream.size,
		})
	}
	bg.WithLock(l, func() {
		if l.State != types.HttpNfcLeaseStateInitializing {
			return // aborted meanwhile
		}
		bg.Update(l, []types.PropertyChange{
			{Name: "info", Val: info},
			{Name: "state", Val: types.HttpNfcLeaseStateReady},
		})
		l.deadline = time.Now().Add(l.timeout)
		l.timer = time.AfterFunc(l.timeout, l.expire)
	})
}

// expire runs when the timer fires: a lease not renewed in time goes to error.
func (l *exportLease) expire() {
	bg := l.x.s.bgContext()
	bg.WithLock(l, func() {
		if l.State != types.HttpNfcLeaseStateReady {
			return
		}
		if wait := time.Until(l.deadline); wait > 0 {
			l.timer.Reset(wait)
			return
		}
		l.x.timedOut.Add(1)
		l.end(bg, types.HttpNfcLeaseStateError, &types.LocalizedMethodFault{
			Fault: &types.Timedout{}, LocalizedMessage: "The operation is not allowed in the current state: lease timed out."})
	})
}

// end moves the lease to done or error and stops its transfers.
func (l *exportLease) end(ctx *simulator.Context, state types.HttpNfcLeaseState, fault *types.LocalizedMethodFault) {
	changes := []types.PropertyChange{{Name: "state", Val: state}}
	if fault != nil {
		changes = append(changes, types.PropertyChange{Name: "error", Val: fault})
	}
	ctx.Update(l, changes)
	if l.timer != nil {
		l.timer.Stop()
	}
	l.cancel()
}

func (l *exportLease) state() types.HttpNfcLeaseState {
	var s types.HttpNfcLeaseState
	l.x.s.bgContext().WithLock(l, func() { s = l.State })
	return s
}

func (l *exportLease) timedOut() bool {
	if l.State != types.HttpNfcLeaseStateError || l.Error == nil {
		return false
	}
	_, ok := l.Error.Fault.(*types.Timedout)
	return ok
}

// usable is the fault a call gets on a lease that cannot take it: Timedout
// once timed out, InvalidState once completed or aborted (or, unless
// initOK, before it is ready).
func (l *exportLease) usable(initOK bool) *soap.Fault {
	switch {
	case l.timedOut():
		return simulator.Fault("lease timed out", &types.Timedout{})
	case l.State == types.HttpNfcLeaseStateReady,
		l.State == types.HttpNfcLeaseStateInitializing && initOK:
		return nil
	}
	return simulator.Fault("lease is "+string(l.State), &types.InvalidState{})
}

func (l *exportLease) HttpNfcLeaseProgress(ctx *simulator.Context, req *types.HttpNfcLeaseProgress) soap.HasFault {
	body := &methods.HttpNfcLeaseProgressBody{}
	if body.Fault_ = l.usable(true); body.Fault_ != nil {
		return body
	}
	if req.Percent < 0 || req.Percent > 100 {
		body.Fault_ = simulator.Fault("percent out of range", &types.InvalidArgument{InvalidProperty: "percent"})
		return body
	}
	ctx.Update(l, []types.PropertyChange{{Name: "transferProgress", Val: req.Percent}})
	l.deadline = time.Now().Add(l.timeout)
	body.Res = &types.HttpNfcLeaseProgressResponse{}
	return body
}

func (l *exportLease) HttpNfcLeaseComplete(ctx *simulator.Context, req *types.HttpNfcLeaseComplete) soap.HasFault {
	body := &methods.HttpNfcLeaseCompleteBody{}
	if body.Fault_ = l.usable(false); body.Fault_ != nil {
		return body
	}
	l.end(ctx, types.HttpNfcLeaseStateDone, nil)
	body.Res = &types.HttpNfcLeaseCompleteResponse{}
	return body
}

func (l *exportLease) HttpNfcLeaseAbort(ctx *simulator.Context, req *types.HttpNfcLeaseAbort) soap.HasFault {
	body := &methods.HttpNfcLeaseAbortBody{}
	if body.Fault_ = l.usable(true); body.Fault_ != nil {
		return body
	}
	fault := req.Fault
	if fault == nil {
		fault = &types.LocalizedMethodFault{Fault: &types.RequestCanceled{}, LocalizedMessage: "The task was canceled by a user."}
	}
	l.end(ctx, types.HttpNfcLeaseStateError, fault)
	body.Res = &types.HttpNfcLeaseAbortResponse{}
	return body
}

// HttpNfcLeaseSetManifestChecksumType takes, per device key, the checksum
// the manifest is to give (seed 003): before any transfer starts.
func (l *exportLease) HttpNfcLeaseSetManifestChecksumType(ctx *simulator.Context, req *types.HttpNfcLeaseSetManifestChecksumType) soap.HasFault {
	body := &methods.HttpNfcLeaseSetManifestChecksumTypeBody{}
	switch ManifestChecksums(l.x.sums.Load()) {
	case ChecksumsUnknown:
		body.Fault_ = simulator.Fault("HttpNfcLeaseSetManifestChecksumType", &types.MethodNotFound{Receiver: l.Self, Method: "setManifestChecksumType"})
		return body
	case ChecksumsIgnored:
		body.Res = &types.HttpNfcLeaseSetManifestChecksumTypeResponse{}
		return body
	}
	if body.Fault_ = l.usable(false); body.Fault_ != nil {
		return body
	}
	if l.transferred {
		body.Fault_ = simulator.Fault("a transfer has started", &types.InvalidState{})
		return body
	}
	sums := map[string]types.HttpNfcLeaseManifestEntryChecksumType{}
	for _, kv := range req.DeviceUrlsToChecksumTypes {
		known := false
		for _, f := range l.files {
			known = known || f.disk.deviceKey == kv.Key
		}
		t := types.HttpNfcLeaseManifestEntryChecksumType(kv.Value)
		if !known || (t != types.HttpNfcLeaseManifestEntryChecksumTypeSha1 && t != types.HttpNfcLeaseManifestEntryChecksumTypeSha256) {
			body.Fault_ = simulator.Fault("bad device key or checksum type", &types.InvalidArgument{InvalidProperty: "deviceUrlsToChecksumTypes"})
			return body
		}
		sums[kv.Key] = t
	}
	l.sums = sums
	body.Res = &types.HttpNfcLeaseSetManifestChecksumTypeResponse{}
	return body
}

func (l *exportLease) HttpNfcLeaseGetManifest(ctx *simulator.Context, req *types.HttpNfcLeaseGetManifest) soap.HasFault {
	body := &methods.HttpNfcLeaseGetManifestBody{}
	if body.Fault_ = l.usable(false); body.Fault_ != nil {
		return body
	}
	res := &types.HttpNfcLeaseGetManifestResponse{}
	if l.x.late.Load() {
		for _, f := range l.files {
			if !f.sent.Load() {
				body.Res = res
				return body
			}
		}
	}
	for _, f := range l.files {
		e := types.HttpNfcLeaseManifestEntry{
			Key:           f.disk.deviceKey,
			Sha1:          f.stream.sha1,
			Checksum:      f.stream.sha1,
			ChecksumType:  string(types.HttpNfcLeaseManifestEntryChecksumTypeSha1),
			Size:          f.stream.size,
			Disk:          true,
			Capacity:      f.disk.capacity,
			PopulatedSize: f.stream.size,
		}
		if l.sums[f.disk.deviceKey] == types.HttpNfcLeaseManifestEntryChecksumTypeSha256 {
			// sha1 is deprecated since 6.7: given only when asked for.
			e.Sha1, e.Checksum, e.ChecksumType = "", f.stream.sha256, string(types.HttpNfcLeaseManifestEntryChecksumTypeSha256)
		}
		res.Returnval = append(res.Returnval, e)
	}
	body.Res = res
	return body
}
