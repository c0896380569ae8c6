package fs

import (
	"context"
	"strconv"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/vspherefs/vspherefs/backend"
)

// guestNode is what every node of vms/<vm>/ shares: the VM, and where the
// node is in the guest. The guest path is not stored but read from the
// node's place in the tree, so that a rename (which go-fuse applies to the
// tree) moves a node and everything below it at once.
type guestNode struct {
	gofs.Inode
	fs  *FS
	vm  *backend.GuestVM
	top *gofs.Inode // the VM's folder; nil for that folder itself
}

// guestPath is the node's path in the guest, "/" for the VM's folder.
func (n *guestNode) guestPath() string {
	if n.top == nil {
		return "/"
	}
	return "/" + n.Path(n.top)
}

// child makes the guestNode of a child of this directory node.
func (n *guestNode) child() guestNode {
	top := n.top
	if top == nil {
		top = n.EmbeddedInode()
	}
	return guestNode{fs: n.fs, vm: n.vm, top: top}
}

func (n *guestNode) mountPath() string { return n.Path(nil) }

func guestJoin(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// guestInos gives guest paths inode numbers: a hash of VM and path, except
// where a rename or removal happened. A renamed file keeps its number under
// its new path (as POSIX has it), and a path left behind gets a new one, so
// that two live objects never share a number (go-fuse would take them for
// one node). Only renamed and removed paths take memory.
type guestInos struct {
	mu   sync.Mutex
	over map[string]uint64 // vm id + path -> number
	seq  uint64
}

func (t *guestInos) key(vm *backend.GuestVM, p string) string { return vm.ID() + p }

// ino is the number of the object at p now.
func (t *guestInos) ino(vm *backend.GuestVM, p string) uint64 {
	k := t.key(vm, p)
	t.mu.Lock()
	n, ok := t.over[k]
	t.mu.Unlock()
	if ok {
		return n
	}
	return ino("guest", k)
}

// fresh gives p a number no object had (called with t.mu held).
func (t *guestInos) fresh(k string) {
	t.seq++
	t.over[k] = ino("guest", k+"#"+strconv.FormatUint(t.seq, 10))
}

// gone: the object at p was removed; whatever is made there next is new.
func (t *guestInos) gone(vm *backend.GuestVM, p string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fresh(t.key(vm, p))
}

// moved: the object at src, node moved, is now at dst, with whatever of
// its subtree the kernel knows. Each keeps its number under its new path;
// the paths left behind get new ones.
func (t *guestInos) moved(vm *backend.GuestVM, src, dst string, node *gofs.Inode) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var walk func(rel string, n *gofs.Inode)
	walk = func(rel string, n *gofs.Inode) {
		t.over[t.key(vm, dst+rel)] = n.StableAttr().Ino
		t.fresh(t.key(vm, src+rel))
		for name, c := range n.Children() {
			walk(rel+"/"+name, c)
		}
	}
	if node == nil {
		t.fresh(t.key(vm, dst))
		t.fresh(t.key(vm, src))
		return
	}
	walk("", node)
}

func (f *FS) guestIno(vm *backend.GuestVM, p string) uint64 { return f.inos.ino(vm, p) }

// Setxattr and Removexattr: the guest API has no extended attributes.
// ENOTSUP (not go-fuse's default ENODATA) is what cp -p and tar take for
// "this filesystem has none" and pass over silently.
func (n *guestNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.ENOTSUP
}

func (n *guestNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.ENOTSUP
}
