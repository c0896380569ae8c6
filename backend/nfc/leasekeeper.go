package nfc

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/nfc"
)

// leaseKeeper renews an export lease with HttpNfcLeaseProgress (the real
// percentage done) four times per lease timeout, so a lease never lapses
// while a transfer runs, however slowly. If a renewal fails the lease is
// lost: the keeper cancels the transfers and remembers why.
type leaseKeeper struct {
	lease  *nfc.Lease
	total  int64
	done   atomic.Int64
	cancel context.CancelFunc
	report func(done, total int64)

	stop chan struct{}
	wg   sync.WaitGroup
	err  atomic.Pointer[error]
}

// keepAlive starts renewing lease, whose timeout is timeout (seconds as the
// lease info gives it; 0 means vCenter's 300). cancel stops the transfers.
func keepAlive(lease *nfc.Lease, timeoutSecs int32, total int64, cancel context.CancelFunc, report func(done, total int64)) *leaseKeeper {
	if timeoutSecs <= 0 {
		timeoutSecs = 300
	}
	every := time.Duration(timeoutSecs) * time.Second / 4
	k := &leaseKeeper{lease: lease, total: total, cancel: cancel, report: report, stop: make(chan struct{})}
	k.wg.Add(1)
	go k.run(every)
	return k
}

func (k *leaseKeeper) run(every time.Duration) {
	defer k.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		err := k.lease.Progress(ctx, k.percent())
		cancel()
		if err != nil {
			k.err.Store(&err)
			k.cancel()
			return
		}
		if k.report != nil {
			k.report(k.done.Load(), k.total)
		}
	}
}

// percent is the share of the lease's bytes transferred, 0 to 100.
func (k *leaseKeeper) percent() int32 {
	if k.total <= 0 {
		return 0
	}
	return int32(min(100, 100*k.done.Load()/k.total))
}

// Write counts transferred bytes (the keeper is an io.Writer for io.MultiWriter).
func (k *leaseKeeper) Write(p []byte) (int, error) {
	k.done.Add(int64(len(p)))
	return len(p), nil
}

// Stop stops renewing and returns the error that lost the lease, if any.
func (k *leaseKeeper) Stop() error {
	close(k.stop)
	k.wg.Wait()
	if err := k.err.Load(); err != nil {
		return *err
	}
	return nil
}
