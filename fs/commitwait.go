package fs

// A close() or fsync() waiting for a commit stays killable. The kernel
// interrupts the request when the writer gets a signal (go-fuse then cancels
// its context); if the writer is dying (SIGKILL, or a signal such as SIGINT
// whose default action ends it) the wait ends with EINTR at once, while the
// commit goes on to its end (success, or failure within the upload's
// progress deadline) on its own and is logged. A signal the writer handles
// (a runtime's preemption, SIGCHLD) does not end the wait: the kernel waits
// for the answer, and close() returns the commit's outcome. Unmount waits for
// the commits, and for the goroutines waiting for them, through the mount's
// commits tracker (commits.go).

import (
	"context"
	"syscall"
	"time"
)

// awaitOrDie waits for done; it returns false early if the request was
// interrupted and its caller is dying.
func awaitOrDie(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if callerDying(ctx) {
			return false
		}
		select {
		case <-done:
			return true
		case <-t.C:
		}
	}
}

// commitWait commits names of it as commitErrno does, but returns EINTR as
// soon as its caller is dying, leaving the commit to run out by itself.
func (w *Writes) commitWait(ctx context.Context, it *itemWrites, names []string) syscall.Errno {
	done := make(chan struct{})
	var err error
	end := w.hold()
	go func() {
		defer end()
		err = w.commit(it, names, nil)
		close(done)
	}()
	if !awaitOrDie(ctx, done) {
		w.mu.Lock()
		p := it.path
		w.mu.Unlock()
		w.log().Warn("close interrupted: the writer is gone; the commit goes on and is logged when it ends", "item", p)
		return syscall.EINTR
	}
	if err != nil {
		return syscall.EIO
	}
	return 0
}

// sessionWait waits for the item's running update session to end, or
// returns EINTR when the caller is dying.
func (w *Writes) sessionWait(ctx context.Context, it *itemWrites) syscall.Errno {
	done := make(chan struct{})
	end := w.hold()
	go func() {
		defer end()
		it.session.Lock()
		it.session.Unlock() //nolint:staticcheck // only waiting for the holder
		close(done)
	}()
	if !awaitOrDie(ctx, done) {
		return syscall.EINTR
	}
	return 0
}
