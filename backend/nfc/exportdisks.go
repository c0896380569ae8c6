package nfc

import (
	"context"
	"sync"
	"time"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/vim25"

	"github.com/vspherefs/vspherefs/remote"
)

// diskResult is one disk of an export, spooled (or failed).
type diskResult struct {
	f        remote.ExportedFile
	sums     diskSums
	verified bool // matched its own manifest entry: served early
}

// fetchDisks spools an export's disks in parallel, as many at once per
// host as req.Transfers allows (one at a time without it, as govc does):
// a lease hands out every disk's URL at once. The first failure cancels
// the others; every result is returned so that the caller removes what
// was written. DiskReady is called one disk at a time.
func fetchDisks(ctx context.Context, c *vim25.Client, lease *nfc.Lease, items []nfc.FileItem, req ExportRequest, on string, want1 bool, keeper *leaseKeeper, report func(done, total int64)) ([]diskResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	transfers := req.Transfers
	if transfers == nil {
		transfers = NewTransfers(1)
	}
	res := make([]diskResult, len(items))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex // firstErr, and DiskReady one at a time
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	for i, item := range items {
		// Slots are taken in lease order, so disks finish roughly in the
		// order cp -r reads them.
		release, err := transfers.Acquire(ctx, item.URL.Host)
		if err != nil {
			fail(err)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, sums, err := download(diskOrigin(ctx, i, item.Path), c, item, req.Dir, want1, keeper, req.Stall)
			release()
			res[i].f = f
			if err != nil {
				fail(err)
				return
			}
			res[i].sums = sums
			report(keeper.done.Load(), 0)
			// Check this disk now if the manifest has its entry already: then
			// it can be served while the lease goes on for the others.
			cctx, ccancel := callContext(ctx, req.Stall)
			ok, err := checkDisk(cctx, lease, f, sums, on)
			ccancel()
			if err != nil {
				fail(err)
				return
			}
			if ok {
				res[i].verified = true
				res[i].f.Ready = time.Now()
				if req.DiskReady != nil {
					mu.Lock()
					req.DiskReady(i, res[i].f)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return res, firstErr
}
