package nfc

import (
	"context"
	"sync"
)

// DefaultMaxTransfers is --max-transfers' default: disk streams at once to
// one ESXi host. A host serves dozens of NFC streams; four keep a VM's disks
// moving in parallel while several exports of one mount stay a small share.
const DefaultMaxTransfers = 4

// Transfers bounds the disk transfers running at once to each host, across
// every export of a mount. The zero value is unusable; see NewTransfers.
type Transfers struct {
	max   int
	mu    sync.Mutex
	hosts map[string]chan struct{}
}

// NewTransfers allows n transfers per host at once (at least one).
func NewTransfers(n int) *Transfers {
	return &Transfers{max: max(1, n), hosts: map[string]chan struct{}{}}
}

// Acquire waits for a slot on host (no lock is held while waiting) and
// returns its release; it fails only when ctx ends first.
func (t *Transfers) Acquire(ctx context.Context, host string) (func(), error) {
	t.mu.Lock()
	sem := t.hosts[host]
	if sem == nil {
		sem = make(chan struct{}, t.max)
		t.hosts[host] = sem
	}
	t.mu.Unlock()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
