// Package nfc exports VMs and snapshots through HttpNfcLease as govc
// export.ovf writes them (lease.go), runs the mount's export jobs into a
// spool (jobs.go), and makes and removes the snapshots exports/ shows.
package nfc

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/status"
	"github.com/vspherefs/vspherefs/vmdk"
)

// ExportRequest says what to export and where to spool it.
type ExportRequest struct {
	VM       types.ManagedObjectReference
	Name     string // package name, as govc export.ovf -name; "" means the VM's name
	Snapshot string // snapshot name or path; "" exports the VM, which must be powered off
	// SnapshotRef, if set, names the snapshot exactly (names need not be
	// unique); Snapshot is then only its label in errors.
	SnapshotRef *types.ManagedObjectReference
	Dir         string // spool directory, created if needed; the package's files go there
	// Stall, if set, fails a disk transfer that receives nothing for this
	// long (the lease is then aborted): a transfer has no overall deadline.
	Stall time.Duration
	// Progress, if set, is told how far the disks are, at each lease
	// renewal and at the end of each disk (one call at a time, from
	// Export's goroutines; none after Export returns).
	Progress func(ExportProgress)
	// DiskReady, if set, is told of each disk (by its index in lease order)
	// as soon as it is spooled and matches its own entry in the lease's
	// manifest, while the lease goes on for the other disks: from then on
	// its bytes can be served. A disk that the manifest has no entry for
	// yet is not told of: it is checked with the others at the end, and
	// can only be served once Export has returned. Called from Export's
	// goroutine, one disk at a time.
	DiskReady func(i int, f remote.ExportedFile)
	// Transfers, if set, bounds the disks fetched at once per host, and
	// disks are fetched in parallel within it; nil: one after another.
	Transfers *Transfers
	// LeaseReady, if set, is told when the lease is ready and the disks'
	// transfers begin.
	LeaseReady func()
}

// ExportProgress is how far an export's disk transfers are.
type ExportProgress struct {
	Done, Total int64 // bytes; Total is the lease's own estimate
}

// Export exports a VM, or one of its snapshots, as the OVF package that
// `govc export.ovf -sha 256` writes: <name>.ovf from OvfManager.CreateDescriptor,
// one streamOptimized .vmdk per disk with the bytes the lease serves, and
// <name>.mf with their SHA256 in ovftool's format. It holds one lease for
// the whole transfer, renews it, checks the disks against the lease's
// manifest, and completes it; on any error or cancellation it aborts the
// lease and removes what it spooled. A powered-on VM is ErrBusy.
func Export(ctx context.Context, c *vim25.Client, req ExportRequest) (files []remote.ExportedFile, err error) {
	name := req.Name
	if name == "" {
		var o mo.VirtualMachine
		cctx, cancel := callContext(ctx, req.Stall)
		err := property.DefaultCollector(c).RetrieveOne(cctx, req.VM, []string{"name"}, &o)
		cancel()
		if err != nil {
			return nil, backend.VimError("RetrieveProperties", req.VM.Value, err)
		}
		name = o.Name
	}
	on := name
	if req.Snapshot != "" {
		on += "@" + req.Snapshot
	}
	if err := os.MkdirAll(req.Dir, 0o750); err != nil {
		return nil, backend.NewError("export", on, remote.ErrIO, err)
	}

	cctx, cancel := callContext(ctx, req.Stall)
	lease, err := requestLease(cctx, c, req.VM, req.Snapshot, req.SnapshotRef, on)
	cancel()
	if err != nil {
		return nil, err
	}
	var written []string
	defer func() {
		if err != nil {
			abortLease(lease, err)
			for _, p := range written {
				_ = os.Remove(p)
			}
		}
	}()

	// (a wait for the lease to be ready, not a call: no deadline of its own)
	info, err := lease.Wait(ctx, nil)
	if err != nil {
		return nil, backend.VimError("HttpNfcLease", on, err)
	}
	if req.LeaseReady != nil {
		req.LeaseReady()
	}
	var items []nfc.FileItem
	var total int64
	for _, item := range info.Items {
		total += item.Size
		// As govc: disks only, named <name>-<target> unless already <name>...
		if filepath.Ext(item.Path) != ".vmdk" {
			continue
		}
		if !strings.HasPrefix(item.Path, name) {
			item.Path = name + "-" + item.Path
		}
		items = append(items, item)
	}

	want1, err := askSHA256(ctx, c, lease, items, req.Stall)
	if err != nil {
		return nil, err
	}

	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var reportMu sync.Mutex // the keeper and this loop both report: one at a time
	report := func(done, total int64) {
		if req.Progress != nil {
			reportMu.Lock()
			defer reportMu.Unlock()
			req.Progress(ExportProgress{Done: done, Total: total})
		}
	}
	keeper := keepAlive(lease, info.LeaseTimeout, total, cancel, report)
	res, derr := fetchDisks(tctx, c, lease, items, req, on, want1, keeper, func(n, t int64) { report(n, total) })
	for _, r := range res {
		if r.f.Path != "" {
			written = append(written, r.f.Path)
		}
	}
	if derr != nil {
		if kerr := keeper.Stop(); kerr != nil {
			return nil, backend.VimError("HttpNfcLeaseProgress", on, kerr)
		}
		return nil, derr
	}
	mf := new(strings.Builder)
	sums := map[string]diskSums{} // device key -> the disk's sums
	verified := map[string]bool{} // device key -> checked on its own, served early
	var unchecked []remote.ExportedFile
	for i, item := range items {
		sums[item.DeviceId] = res[i].sums
		verified[item.DeviceId] = res[i].verified
		fmt.Fprintf(mf, "SHA256(%s)= %s\n", res[i].f.Name, res[i].sums.sha256)
		files = append(files, res[i].f)
		if !res[i].verified {
			unchecked = append(unchecked, res[i].f)
		}
	}
	if err := keeper.Stop(); err != nil {
		return nil, backend.VimError("HttpNfcLeaseProgress", on, err)
	}
	if len(unchecked) > 0 { // a disk checked on its own needs no second look
		cctx, cancel = callContext(ctx, req.Stall)
		defer cancel()
		if err := checkManifest(cctx, lease, unchecked, sums, on); err != nil {
			return nil, err
		}
	}
	cctx, cancel = callContext(ctx, req.Stall)
	defer cancel()
	if err := lease.Complete(cctx); err != nil {
		return nil, backend.VimError("HttpNfcLeaseComplete", on, err)
	}
	end := time.Now()
	for i := range files {
		if !verified[files[i].Disk.DeviceKey] {
			files[i].Ready = end
		}
	}

	cdp := types.OvfCreateDescriptorParams{Name: name}
	for _, item := range items {
		cdp.OvfFiles = append(cdp.OvfFiles, item.File())
	}
	cctx, cancel = callContext(ctx, req.Stall)
	defer cancel()
	desc, err := ovf.NewManager(c).CreateDescriptor(cctx, object.NewVirtualMachine(c, req.VM), cdp)
	if err != nil {
		return nil, backend.VimError("CreateDescriptor", on, err)
	}
	ovfFile, sum, err := writeFile(req.Dir, name+".ovf", desc.OvfDescriptor)
	if ovfFile.Path != "" {
		written = append(written, ovfFile.Path)
	}
	if err != nil {
		return nil, backend.NewError("export", on, remote.ErrIO, err)
	}
	fmt.Fprintf(mf, "SHA256(%s)= %s\n", ovfFile.Name, sum)
	mfFile, _, err := writeFile(req.Dir, name+".mf", mf.String())
	if mfFile.Path != "" {
		written = append(written, mfFile.Path)
	}
	if err != nil {
		return nil, backend.NewError("export", on, remote.ErrIO, err)
	}
	ovfFile.Ready, mfFile.Ready = end, end
	return append(append([]remote.ExportedFile{ovfFile}, files...), mfFile), nil
}

// diskOrigin is ctx for the transfer of disk i (in lease order), called
// name in the package: under the origin of ctx, the mount folder the export
// is for (status.WithOrigin), its file there: exports/<vm>/<name>, or the
// raw image disks/<vm>/disk-<i>.img.
func diskOrigin(ctx context.Context, i int, name string) context.Context {
	folder := status.Origin(ctx)
	if folder == "" {
		return ctx
	}
	if strings.HasPrefix(folder, "disks/") {
		name = remote.DiskImageName(i)
	}
	return status.WithOrigin(ctx, folder+"/"+name)
}

// callContext is one API call's deadline (--timeout); 0 means none.
func callContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// requestLease asks for an export lease of the VM or of one of its snapshots.
func requestLease(ctx context.Context, c *vim25.Client, vm types.ManagedObjectReference, snapshot string, ref *types.ManagedObjectReference, on string) (*nfc.Lease, error) {
	v := object.NewVirtualMachine(c, vm)
	if ref != nil {
		lease, err := v.ExportSnapshot(ctx, ref)
		if err != nil {
			return nil, backend.VimError("ExportSnapshot", on, err)
		}
		return lease, nil
	}
	if snapshot == "" {
		lease, err := v.Export(ctx)
		if err != nil {
			if on2 := fault.Is(err, &types.InvalidPowerState{}); on2 {
				// Busy, not down: the VM is there and running; say what to do.
				return nil, &remote.Error{Call: "ExportVm", On: on, Kind: remote.ErrBusy, Err: err,
					Fault: err.Error() + " (power the VM off, or export a snapshot of it: <vm>@<snapshot>)"}
			}
			return nil, backend.VimError("ExportVm", on, err)
		}
		return lease, nil
	}
	snap, err := FindSnapshot(ctx, c, vm, snapshot)
	if err != nil {
		return nil, err
	}
	lease, err := v.ExportSnapshot(ctx, &snap)
	if err != nil {
		return nil, backend.VimError("ExportSnapshot", on, err)
	}
	return lease, nil
}

// abortLease aborts a lease after a failed export, telling the server why.
// It needs its own context: the caller's may be what was cancelled.
func abortLease(lease *nfc.Lease, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var f types.BaseMethodFault = &types.SystemError{Reason: cause.Error()}
	if errors.Is(cause, context.Canceled) {
		f = &types.RequestCanceled{}
	}
	// A lease that already ended (timed out) refuses: nothing is left to release.
	_ = lease.Abort(ctx, &types.LocalizedMethodFault{Fault: f, LocalizedMessage: cause.Error()})
}

// download spools one disk, hashing it as it goes. A transfer that loses
// its stream (a reset, a 503, a body cut short) is tried once more before
// the export fails (and its lease is aborted): from the bytes spooled, with
// Range where the host takes it, else from byte 0 with the spooled bytes
// checked, not trusted, before they are skipped. A stall is not retried:
// the one deadline is spent.
func download(ctx context.Context, c *vim25.Client, item nfc.FileItem, dir string, want1 bool, counter io.Writer, stall time.Duration) (remote.ExportedFile, diskSums, error) {
	f := remote.ExportedFile{Name: item.Path, Path: filepath.Join(dir, item.Path)}
	call := "GET " + item.URL.Path
	out, err := os.OpenFile(f.Path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return remote.ExportedFile{}, diskSums{}, backend.NewError("export", item.Path, remote.ErrIO, err)
	}
	defer out.Close()
	h256 := sha256.New()
	sinks := []io.Writer{out, h256, counter}
	var h1 hash.Hash
	if want1 { // the manifest checks by SHA-1 (manifest.go)
		h1 = sha1.New()
		sinks = append(sinks, h1)
	}
	sink := io.MultiWriter(sinks...)
	for attempt := 0; ; attempt++ {
		n, err := fetchDisk(ctx, c, item, call, out, f.Size, sink, stall)
		f.Size += n
		if err == nil {
			break
		}
		if attempt > 0 || ctx.Err() != nil || !backend.Transient(err) {
			return f, diskSums{}, err
		}
		if backend.SleepCtx(ctx, backend.Backoff(0)) != nil {
			return f, diskSums{}, ctx.Err()
		}
	}
	if err := out.Close(); err != nil {
		return f, diskSums{}, backend.NewError(call, item.Path, remote.ErrIO, err)
	}
	img, err := vmdk.OpenImageFile(f.Path)
	if err != nil {
		return f, diskSums{}, backend.NewError(call, item.Path, remote.ErrIO, err)
	}
	f.Disk = &remote.ExportedDisk{DeviceKey: item.DeviceId, Capacity: img.Size()}
	for _, e := range img.Allocated() {
		f.Disk.Allocated += e[1] - e[0]
	}
	sums := diskSums{sha256: backend.HexSum(h256)}
	if h1 != nil {
		sums.sha1 = backend.HexSum(h1)
	}
	return f, sums, nil
}

// fetchDisk GETs a disk from byte have on (Range: bytes=have-), writing the
// new bytes to sink; a 200 answer to a ranged request starts at byte 0, and
// its first have bytes must equal out's. It returns the new bytes written.
func fetchDisk(ctx context.Context, c *vim25.Client, item nfc.FileItem, call string, out *os.File, have int64, sink io.Writer, stall time.Duration) (int64, error) {
	if stall > 0 {
		guard := backend.NewStallGuard(ctx, stall, call, item.Path)
		defer guard.Stop()
		ctx = guard.Context()
		body, n, err := fetchDiskBody(ctx, c, item, call, out, have, sink, guard)
		if body != nil {
			body.Close()
		}
		return n, err
	}
	body, n, err := fetchDiskBody(ctx, c, item, call, out, have, sink, nil)
	if body != nil {
		body.Close()
	}
	return n, err
}

func fetchDiskBody(ctx context.Context, c *vim25.Client, item nfc.FileItem, call string, out *os.File, have int64, sink io.Writer, guard *backend.StallGuard) (io.ReadCloser, int64, error) {
	param := soap.DefaultDownload
	if have > 0 {
		param.Headers = map[string]string{"Range": fmt.Sprintf("bytes=%d-", have)}
	}
	res, err := c.DownloadRequest(ctx, item.URL, &param)
	if err != nil {
		if guard != nil {
			err = guard.Err(err)
		}
		if errors.Is(err, context.Canceled) {
			return nil, 0, err
		}
		return nil, 0, backend.TransportError(call, item.Path, err)
	}
	var body io.ReadCloser = res.Body
	if guard != nil {
		body = guard.Wrap(body)
	}
	body = &backend.TransportBody{ReadCloser: body, Call: call, On: item.Path}
	switch {
	case res.StatusCode == http.StatusPartialContent && have > 0:
	case res.StatusCode == http.StatusOK:
		if have > 0 {
			if err := sameStart(body, out, have); err != nil {
				return body, 0, backend.NewError(call, item.Path, remote.ErrIO, err)
			}
		}
	default:
		return body, 0, &remote.Error{Call: call, On: item.Path, Kind: remote.ErrIO, Fault: res.Status, Err: &backend.HTTPStatus{Code: res.StatusCode, Status: res.Status}}
	}
	n, err := io.Copy(sink, body)
	if err != nil {
		var be *remote.Error
		if !errors.As(err, &be) {
			err = backend.NewError(call, item.Path, remote.ErrIO, err)
		}
	}
	return body, n, err
}

// sameStart reads n bytes of body and checks them against the start of f.
func sameStart(body io.Reader, f *os.File, n int64) error {
	got := make([]byte, 256<<10)
	have := make([]byte, len(got))
	for at := int64(0); at < n; {
		k := min(int64(len(got)), n-at)
		if _, err := io.ReadFull(body, got[:k]); err != nil {
			return err
		}
		if _, err := f.ReadAt(have[:k], at); err != nil {
			return err
		}
		if !bytes.Equal(got[:k], have[:k]) {
			return fmt.Errorf("the disk's bytes before %d changed between tries", at+k)
		}
		at += k
	}
	return nil
}

func writeFile(dir, name, content string) (remote.ExportedFile, string, error) {
	f := remote.ExportedFile{Name: name, Path: filepath.Join(dir, name), Size: int64(len(content))}
	if err := os.WriteFile(f.Path, []byte(content), 0o640); err != nil {
		return f, "", err
	}
	sum := sha256.Sum256([]byte(content))
	return f, hex.EncodeToString(sum[:]), nil
}
