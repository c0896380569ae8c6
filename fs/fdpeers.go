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
// holds a writable descriptor on inode ino (from /proc/<pid>/fdinfo, which
// names each descriptor's inode and flags). False when that cannot be read.
func callerKeepsWriter(ctx context.Context, ino uint64) bool {
	c, ok := fuse.FromContext(ctx)
	if !ok || c.Pid == 0 || uint32(os.Getpid()) == c.Pid {
		return false
	}
	dir := "/proc/" + strconv.FormatUint(uint64(c.Pid), 10) + "/fdinfo"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want := strconv.FormatUint(ino, 10)
	for _, e := range ents {
		if fdinfoWriter(dir+"/"+e.Name(), want) {
			return true
		}
	}
	return false
}

// fdinfoWriter reads one fdinfo file: is it a writable descriptor of ino?
func fdinfoWriter(p, ino string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var flags int64 = -1
	match := false
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
		}
	}
	return match && flags >= 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY
}

// anyoneKeepsWriter says whether any process (but this one) holds a
// writable descriptor on inode ino: for a streamed upload, which cannot be
// committed twice, the last close of all, forked shells included, ends it.
func anyoneKeepsWriter(ino uint64) bool {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	self := strconv.Itoa(os.Getpid())
	want := strconv.FormatUint(ino, 10)
	for _, p := range procs {
		if p.Name() == self || p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		dir := "/proc/" + p.Name() + "/fdinfo"
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if fdinfoWriter(dir+"/"+e.Name(), want) {
				return true
			}
		}
	}
	return false
}
