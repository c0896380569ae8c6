package fs

// FUSE sends a flush at every close(2) of a descriptor, dup'd ones
// included, and cannot say which close is the last: bash's `echo x > f`
// opens f, dup2s it to 1 and closes the original before echo writes. A
// commit at that first close would send an empty file, and a second one
// would follow. So a close commits only when the closing process holds no
// other writable descriptor of the same file; its last close does.

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// callerKeepsWriter says whether the process behind a FUSE request still
// holds a writable descriptor on inode ino of this mount (m; from
// /proc/<pid>/fdinfo, which names each descriptor's inode, mount and
// flags). False when that cannot be read.
//
// Its parent is asked too: a child's exec(2) closes the descriptors it
// inherited with O_CLOEXEC (what Go, Python and most libraries open with),
// and each such close is a flush from the child while the process that
// forked it still has the file open and is writing it.
func callerKeepsWriter(ctx context.Context, m *mountIdent, ino uint64) bool {
	pid, ok := requester(ctx)
	return ok && (pidHolds(pid, m, ino, true) || parentKeepsWriter(pid, m, ino))
}

// requester is the process behind a FUSE request, unless unknown or this one.
func requester(ctx context.Context) (int, bool) {
	c, ok := fuse.FromContext(ctx)
	if !ok || c.Pid == 0 || uint32(os.Getpid()) == c.Pid {
		return 0, false
	}
	return int(c.Pid), true
}

// parentKeepsWriter says whether the parent of process pid holds a
// writable descriptor on inode ino of the mount m: a request of pid is then
// a child's close (often its exec's) of a file the parent is still writing.
func parentKeepsWriter(pid int, m *mountIdent, ino uint64) bool {
	pp := parentPid(pid)
	return pp > 1 && pp != os.Getpid() && pidHolds(pp, m, ino, true)
}

// parentHolds says whether the parent of the process behind a FUSE request
// holds any descriptor on inode ino of the mount m: a flush from the
// request is then a child's close of a file its parent still reads (Go and
// Python open with O_CLOEXEC, so every fork and exec of a reader closes its
// copies), and must not end the parent's reads or transfers.
func parentHolds(ctx context.Context, m *mountIdent, ino uint64) bool {
	pid, ok := requester(ctx)
	if !ok {
		return false
	}
	pp := parentPid(pid)
	return pp > 1 && pp != os.Getpid() && pidHolds(pp, m, ino, false)
}

// parentPid is the parent of process (or thread) pid, 0 if unknown.
func parentPid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// pidHolds says whether process pid holds a descriptor (with writer, a
// writable one) on inode ino of the mount m.
func pidHolds(pid int, m *mountIdent, ino uint64, writer bool) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fdinfo"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want := strconv.FormatUint(ino, 10)
	for _, e := range ents {
		if fdinfoHolds(dir+"/"+e.Name(), want, m, writer) {
			return true
		}
	}
	return false
}

// fdinfoHolds reads one fdinfo file: is it a descriptor (with writer, a
// writable one) of ino on the mount m?
func fdinfoHolds(p, ino string, m *mountIdent, writer bool) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var flags int64 = -1
	match := false
	mnt := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "flags":
			flags, _ = strconv.ParseInt(v, 8, 64)
		case "ino":
			match = v == ino
		case "mnt_id":
			mnt = v
		}
	}
	return match && flags >= 0 && (!writer || flags&syscall.O_ACCMODE != syscall.O_RDONLY) && m.has(mnt)
}

// anyoneKeepsWriter says whether any process (but this one) holds a
// writable descriptor on inode ino of the mount m: for a streamed upload,
// which cannot be committed twice, the last close of all, forked shells
// included, ends it.
func anyoneKeepsWriter(m *mountIdent, ino uint64) bool {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		if pidHolds(pid, m, ino, true) {
			return true
		}
	}
	return false
}
