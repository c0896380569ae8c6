package guest

import (
	"path"
	"sort"
	"strings"
	"time"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// The cached directory lists are kept true to our own changes: each change
// made through this package patches the lists it affects with what it knows
// (the attributes it set, the stat it read back), instead of dropping them.
// So `ls` shows a change at once, and a stream of changes in one directory
// (rsync writing hundreds of files) never re-lists that directory. Changes
// made by others show after the TTL, as before. A list fetched while a
// change was under way is not stored: it may predate the change.

// edit runs fn on the cached list of dir, if one is cached, copying it first
// (readers hold the old slice), and bumps the generation.
func (v *GuestVM) edit(dir string, fn func([]remote.GuestStat) []remote.GuestStat) {
	k := listKey{v.ref, path.Clean(dir)}
	if t, ok := v.g.lists[k]; ok {
		v.g.lists[k] = backend.Timed[[]remote.GuestStat]{V: fn(append([]remote.GuestStat(nil), t.V...)), At: t.At}
	}
}

// noted records s as the entry of p in its parent's list. Called with g.mu held.
func (v *GuestVM) noted(p string, s remote.GuestStat) {
	v.touched(path.Dir(p))
	v.set(p, s)
}

// set records s as the entry of p, and nothing else. Called with g.mu held.
func (v *GuestVM) set(p string, s remote.GuestStat) {
	s.Name = path.Base(p)
	v.edit(path.Dir(p), func(l []remote.GuestStat) []remote.GuestStat {
		i := sort.Search(len(l), func(i int) bool { return l[i].Name >= s.Name })
		if i < len(l) && l[i].Name == s.Name {
			l[i] = s
			return l
		}
		return append(l[:i], append([]remote.GuestStat{s}, l[i:]...)...)
	})
}

// touched marks directory dir as changed by us: the guest gave it a new
// mtime we do not know, so its entry is read again when next looked up
// (rsync compares directory times after filling them). Called with g.mu held.
func (v *GuestVM) touched(dir string) {
	dir = path.Clean(dir)
	if dir == "/" {
		return
	}
	name := path.Base(dir)
	v.edit(path.Dir(dir), func(l []remote.GuestStat) []remote.GuestStat {
		for i := range l {
			if l[i].Name == name {
				l[i].Stale = true
			}
		}
		return l
	})
}

// gone removes p from its parent's list, and drops the lists of p and of
// everything below it. Called with g.mu held.
func (v *GuestVM) gone(p string) {
	v.touched(path.Dir(p))
	name := path.Base(p)
	v.edit(path.Dir(p), func(l []remote.GuestStat) []remote.GuestStat {
		for i := range l {
			if l[i].Name == name {
				return append(l[:i], l[i+1:]...)
			}
		}
		return l
	})
	v.dropTree(p)
}

// dropTree drops the cached lists of p and its descendants. Called with g.mu held.
func (v *GuestVM) dropTree(p string) {
	p = path.Clean(p)
	for k := range v.g.lists {
		if k.vm == v.ref && (k.dir == p || strings.HasPrefix(k.dir, p+"/") || p == "/") {
			delete(v.g.lists, k)
		}
	}
}

// lookupCached returns p's entry from its parent's cached list. Called with g.mu held.
func (v *GuestVM) lookupCached(p string) (remote.GuestStat, bool) {
	t, ok := v.g.lists[listKey{v.ref, path.Dir(p)}]
	if !ok {
		return remote.GuestStat{}, false
	}
	name := path.Base(p)
	for _, s := range t.V {
		if s.Name == name {
			return s, true
		}
	}
	return remote.GuestStat{}, false
}

// change runs fn with g.mu held and bumps the generation, so that lists
// fetched meanwhile are not stored over the change.
func (v *GuestVM) change(fn func()) {
	v.g.mu.Lock()
	v.g.gen++
	fn()
	v.g.mu.Unlock()
}

// Noted records that p now has the attributes s (after a change this
// package did not make itself, such as an upload read back).
func (v *GuestVM) Noted(p string, s remote.GuestStat) {
	v.change(func() { v.noted(p, s) })
}

// renamed moves src's entry to dst (replacing what dst was) and drops the
// lists below both.
func (v *GuestVM) renamed(src, dst string) {
	v.change(func() {
		s, ok := v.lookupCached(src)
		v.gone(src)
		v.gone(dst)
		if ok {
			v.noted(dst, s)
		} else {
			v.dropList(path.Dir(dst)) // not known: list dst's directory again
		}
	})
}

func (v *GuestVM) dropList(dir string) { delete(v.g.lists, listKey{v.ref, path.Clean(dir)}) }

// attrsSet patches p's cached entry with the attributes just set.
func (v *GuestVM) attrsSet(p string, a remote.GuestAttr) {
	v.change(func() {
		s, ok := v.lookupCached(p)
		if !ok {
			return
		}
		if v.windows {
			// Windows keeps times and the read-only bit, no owner.
			if a.Mode != nil {
				s.Mode = winMode(s.Type, *a.Mode&0o200 == 0)
			}
			a = remote.GuestAttr{Mtime: a.Mtime, Atime: a.Atime}
		}
		a.Apply(&s)
		if a.Mtime != nil {
			s.Stale = false // the mtime is what we just set (on a POSIX guest)
		}
		if v.windows && (a.Mtime != nil || a.Atime != nil) {
			s.Stale = true // Windows keeps less (NTFS 100 ns, FAT 2 s): read it back
		}
		v.set(p, s)
	})
}

// emptyDir records a directory just made as empty, so that the first
// lookups in it (rsync, tar, cp -r fill new directories) need no call.
func (v *GuestVM) emptyDir(p string) {
	v.change(func() {
		v.g.lists[listKey{v.ref, path.Clean(p)}] = backend.Timed[[]remote.GuestStat]{V: []remote.GuestStat{}, At: time.Now()}
	})
}
