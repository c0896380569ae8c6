package fs

// Signals and FUSE_INTERRUPT. The kernel interrupts a request as soon as its
// caller has a signal to handle, and go-fuse then cancels the request's
// context. Most such signals are notifications: SIGCHLD from a child that
// exited (rsync and shells have children), the Go runtime's preemption
// SIGURG, SIGWINCH, a profiler's SIGPROF. A local disk finishes the call
// regardless, and a program that does not retry would fail a getxattr or a
// lookup that was merely slow with "interrupted system call". So an
// interrupt cancels an operation only when its caller is dying or has some
// other signal pending (a SIGINT it handles, SIGALRM, SIGUSR1: someone wants
// the call to stop); otherwise the operation goes on, bounded by its own
// deadlines, and the caller is watched so that a later kill or SIGINT still
// ends it within watchEvery (the kernel interrupts a request only once).

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// watchEvery is how often an interrupted caller is looked at again.
const watchEvery = 50 * time.Millisecond

// notifications are the signals that do not ask a blocked call to stop.
var notifications = sigmask(syscall.SIGCHLD, syscall.SIGURG, syscall.SIGWINCH,
	syscall.SIGCONT, syscall.SIGPROF, syscall.SIGVTALRM, syscall.SIGIO)

func sigmask(sigs ...syscall.Signal) uint64 {
	var m uint64
	for _, s := range sigs {
		m |= 1 << (uint(s) - 1)
	}
	return m
}

// callerState reads /proc/<tid>/status of the thread that made a request:
// dying if it is gone, a zombie, or has SIGKILL pending (the kernel marks a
// dying thread so); pending, the signals it has pending and not blocked.
func callerState(tid uint32) (dying bool, pending uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return os.IsNotExist(err), 0
	}
	defer f.Close()
	var blocked uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			if strings.HasPrefix(v, "Z") || strings.HasPrefix(v, "X") {
				dying = true
			}
		case "SigPnd", "ShdPnd", "SigBlk":
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				continue
			}
			if k == "SigBlk" {
				blocked = n
			} else {
				pending |= n
			}
		}
	}
	if pending&sigmask(syscall.SIGKILL) != 0 {
		dying = true
	}
	return dying, pending &^ blocked
}

// wantsStop says whether an interrupted caller wants its call ended.
func wantsStop(tid uint32) bool {
	dying, pending := callerState(tid)
	return dying || pending&^notifications != 0
}

// callerDying says whether the process that made the request is gone or
// has a fatal signal pending.
func callerDying(ctx context.Context) bool {
	c, ok := fuse.FromContext(ctx)
	if !ok || c.Pid == 0 {
		return false
	}
	dying, _ := callerState(c.Pid)
	return dying
}

// settle turns a request's cancel channel (closed by the kernel's
// interrupt) into one closed only once the caller wants the call to stop;
// done must be called when the operation returns.
func settle(cancel <-chan struct{}, tid uint32) (<-chan struct{}, func()) {
	if tid == 0 || cancel == nil {
		return cancel, func() {} // the kernel's own requests
	}
	out, end := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-end:
			return
		case <-cancel:
		}
		t := time.NewTicker(watchEvery)
		defer t.Stop()
		for !wantsStop(tid) {
			select {
			case <-end:
				return
			case <-t.C:
			}
		}
		close(out)
	}()
	return out, func() { close(end) }
}

// signalFilter applies settle to every request that may wait on the network.
type signalFilter struct{ fuse.RawFileSystem }

func (s signalFilter) Lookup(cancel <-chan struct{}, in *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Lookup(c, in, name, out)
}

func (s signalFilter) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.GetAttr(c, in, out)
}

func (s signalFilter) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.SetAttr(c, in, out)
}

func (s signalFilter) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Mknod(c, in, name, out)
}

func (s signalFilter) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Mkdir(c, in, name, out)
}

func (s signalFilter) Unlink(cancel <-chan struct{}, in *fuse.InHeader, name string) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Unlink(c, in, name)
}

func (s signalFilter) Rmdir(cancel <-chan struct{}, in *fuse.InHeader, name string) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Rmdir(c, in, name)
}

func (s signalFilter) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Rename(c, in, oldName, newName)
}

func (s signalFilter) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Link(c, in, name, out)
}

func (s signalFilter) Symlink(cancel <-chan struct{}, in *fuse.InHeader, to, name string, out *fuse.EntryOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Symlink(c, in, to, name, out)
}

func (s signalFilter) Readlink(cancel <-chan struct{}, in *fuse.InHeader) ([]byte, fuse.Status) {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Readlink(c, in)
}

func (s signalFilter) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Access(c, in)
}

func (s signalFilter) GetXAttr(cancel <-chan struct{}, in *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.GetXAttr(c, in, attr, dest)
}

func (s signalFilter) ListXAttr(cancel <-chan struct{}, in *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.ListXAttr(c, in, dest)
}

func (s signalFilter) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.SetXAttr(c, in, attr, data)
}

func (s signalFilter) RemoveXAttr(cancel <-chan struct{}, in *fuse.InHeader, attr string) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.RemoveXAttr(c, in, attr)
}

func (s signalFilter) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Create(c, in, name, out)
}

func (s signalFilter) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Open(c, in, out)
}

func (s signalFilter) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Read(c, in, buf)
}

func (s signalFilter) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Lseek(c, in, out)
}

func (s signalFilter) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Write(c, in, data)
}

func (s signalFilter) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.CopyFileRange(c, in)
}

func (s signalFilter) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Flush(c, in)
}

func (s signalFilter) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Fsync(c, in)
}

func (s signalFilter) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Fallocate(c, in)
}

func (s signalFilter) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.OpenDir(c, in, out)
}

func (s signalFilter) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.ReadDir(c, in, out)
}

func (s signalFilter) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.ReadDirPlus(c, in, out)
}

func (s signalFilter) StatFs(cancel <-chan struct{}, in *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.StatFs(c, in, out)
}

func (s signalFilter) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	c, done := settle(cancel, in.Pid)
	defer done()
	return s.RawFileSystem.Statx(c, in, out)
}
