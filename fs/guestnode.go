package fs

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// guestNode is what every node of vms/<vm>/ shares: the VM, and where the
// node is in the guest. The guest path is carried by the nodes themselves
// (each knows its directory's node and its name there), not read from
// go-fuse's tree: go-fuse may drop a node from its tree while the kernel
// still uses it (an entry looked up again, a node replaced), and such a
// node's tree path is an internal placeholder (".go-fuse.<n>/deleted/…"),
// which a commit must never use. Rename moves a node (and so everything
// below it) by changing its link.
type guestNode struct {
	gofs.Inode
	fs  *FS
	vm  Guest
	top *gofs.Inode // the VM's folder; nil for that folder itself

	// Under guestPaths:
	up   *guestNode // the directory's node; nil for the VM's folder
	name string     // the name in that directory
}

// guestPaths guards every guestNode's up and name.
var guestPaths sync.RWMutex

// guestPath is the node's path in the guest, "/" for the VM's folder.
func (n *guestNode) guestPath() string {
	guestPaths.RLock()
	defer guestPaths.RUnlock()
	return n.guestPathLocked()
}

func (n *guestNode) guestPathLocked() string {
	if n.up == nil {
		return "/"
	}
	var names []string
	for c := n; c.up != nil; c = c.up {
		names = append(names, c.name)
	}
	slices.Reverse(names)
	return "/" + strings.Join(names, "/")
}

// moveTo records that the node is now name in directory up.
func (n *guestNode) moveTo(up *guestNode, name string) {
	guestPaths.Lock()
	defer guestPaths.Unlock()
	n.up, n.name = up, name
}

// guestNodeOf is the guestNode of a node of vms/<vm>/, or nil.
func guestNodeOf(n *gofs.Inode) *guestNode {
	if n == nil {
		return nil
	}
	switch o := n.Operations().(type) {
	case *guestDir:
		return &o.guestNode
	case *guestFile:
		return &o.guestNode
	case *guestLink:
		return &o.guestNode
	}
	return nil
}

// child makes the guestNode of a child name of this directory node.
func (n *guestNode) child(name string) guestNode {
	top := n.top
	if top == nil {
		top = n.EmbeddedInode()
	}
	return guestNode{fs: n.fs, vm: n.vm, top: top, up: n, name: name}
}

// mountPath is the node's path under the mount, for logs.
func (n *guestNode) mountPath() string {
	top := n.Path(nil)
	if n.top != nil {
		top = n.top.Path(nil)
	}
	if top == "" { // a VM folder go-fuse has let go of
		top = "vms/" + EncodeName(n.vm.Name())
	}
	if n.top == nil {
		return top
	}
	return top + n.guestPath()
}

func guestJoin(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// guestInos gives guest objects inode numbers. An object the kernel holds
// has a node in go-fuse's tree, and keeps the number it was made with for
// as long as the node lives: a renamed file keeps its number under its new
// path (as POSIX has it), because go-fuse moves the node. A path with no
// node gets a new object's number: the hash of VM and path, unless a live
// node has that number (it was renamed away from the path, or removed
// while open); then the hash of path and that node's sequence number, and
// so on. So two live objects never share a number (go-fuse would take them
// for one node: writes to a new file would go to a removed one).
//
// The table holds only the displaced nodes: those renamed, removed or
// replaced. A node the kernel has forgotten (Inode.Forgotten: no kernel
// reference, in no directory) never comes back, except through a lookup
// that read it from the tree just before: go-fuse then takes it back. So a
// sweep, when the table has doubled since the last one, drops the entries
// of nodes forgotten and neither displaced nor handed to a lookup for
// grace (a lookup gets from the tree to go-fuse in microseconds). The
// table is bounded by the nodes the kernel holds, not by the history.
type guestInos struct {
	mu    sync.Mutex
	taken map[uint64]*displaced // number -> the live node that has it
	seq   uint64
	swept int           // entries after the last sweep
	min   int           // a sweep waits for at least this many new entries
	grace time.Duration // a forgotten node is kept this long after its last use
	log   *slog.Logger
}

type displaced struct {
	node *gofs.Inode
	seq  uint64    // the next number for the node's old path is hashed with it
	used time.Time // displaced, or last handed to a lookup
}

// init sets the table up: sweeps no sooner than min new entries (4096 if
// 0), forgotten nodes kept grace (2s if 0) after their last use.
func (t *guestInos) init(min int, grace time.Duration, log *slog.Logger) {
	if min <= 0 {
		min = 4096
	}
	if grace <= 0 {
		grace = 2 * time.Second
	}
	t.taken, t.min, t.grace, t.log = map[uint64]*displaced{}, min, grace, log
}

// free is the number for a new object at p, where the tree has no node:
// one no live node has (called with t.mu held).
func (t *guestInos) free(vm Guest, p string) uint64 {
	k := vm.ID() + p
	n := ino("guest", k)
	for range len(t.taken) + 1 {
		e, ok := t.taken[n]
		if !ok {
			return n
		}
		n = ino("guest", k+"#"+strconv.FormatUint(e.seq, 10))
	}
	t.seq++ // a cycle of hash collisions: a number never hashed before
	return ino("guest", k+"#new#"+strconv.FormatUint(t.seq, 10))
}

// use notes that a lookup is handing out n, which may be displaced.
func (t *guestInos) use(n *gofs.Inode) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.taken[n.StableAttr().Ino]; ok && e.node == n {
		e.used = time.Now()
	}
}

// displace records that n, and whatever of its subtree the tree has, are
// no longer (or soon no longer) at the paths their numbers were made for:
// renamed, removed or replaced.
func (t *guestInos) displace(n *gofs.Inode) {
	if n == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var walk func(n *gofs.Inode)
	walk = func(n *gofs.Inode) {
		num := n.StableAttr().Ino
		if e, ok := t.taken[num]; ok && e.node == n {
			e.used = time.Now()
		} else {
			t.seq++
			t.taken[num] = &displaced{node: n, seq: t.seq, used: time.Now()}
		}
		for _, c := range n.Children() {
			walk(c)
		}
	}
	walk(n)
	if len(t.taken) >= t.swept+max(t.min, t.swept) {
		t.sweep()
	}
}

// sweep drops the entries of nodes forgotten and not handed to a lookup
// for at least grace (called with t.mu held).
func (t *guestInos) sweep() {
	now := time.Now()
	before := len(t.taken)
	for num, e := range t.taken {
		//lint:ignore SA1019 OnForget also fires for nodes that are not forgotten
		if now.Sub(e.used) >= t.grace && e.node.Forgotten() {
			delete(t.taken, num)
		}
	}
	t.swept = len(t.taken)
	if t.log != nil {
		t.log.Debug("guest inode table swept", "before", before, "after", t.swept)
	}
}

// childIno is the number of the object at name: its node's if the tree
// has one, else a free one.
func (d *guestDir) childIno(name string) uint64 {
	if c := d.GetChild(name); c != nil {
		d.fs.inos.use(c)
		return c.StableAttr().Ino
	}
	return d.newIno(name)
}

// newIno is the number for a new node at name: a node the tree still has
// there is displaced first (the guest has something else there now).
func (d *guestDir) newIno(name string) uint64 {
	t := &d.fs.inos
	t.displace(d.GetChild(name))
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.free(d.vm, guestJoin(d.guestPath(), name))
}

// Setxattr and Removexattr: the guest API has no extended attributes.
// ENOTSUP (not go-fuse's default ENODATA) is what cp -p and tar take for
// "this filesystem has none" and pass over silently.
func (n *guestNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return xattrWriteErrno(n.fs) // xattr.go: the same in every tree
}

func (n *guestNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return xattrWriteErrno(n.fs)
}
