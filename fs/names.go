package fs

import (
	"fmt"
	"strings"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The one reversible rule for names that cannot be path components (the
// README shows it): '%', '/' and NUL are percent-encoded; ".", ".." are
// percent-encoded whole; the empty name shows as a lone "%" (which no encoded
// name can be, since a real '%' is always "%25"). When siblings share a name,
// the oldest keeps it and the others get "~<id>" appended.

// EncodeName turns a server-side name into a path component.
func EncodeName(name string) string {
	switch name {
	case "":
		return "%"
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	if !strings.ContainsAny(name, "%/\x00") {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '%', '/', 0:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// DecodeName turns a path component back into a server-side name. A '%'
// that starts no valid escape is taken literally; ValidName says whether
// comp is a name the rule can give back (what mkdir, create and rename need).
func DecodeName(comp string) string {
	if comp == "%" {
		return ""
	}
	if !strings.Contains(comp, "%") {
		return comp
	}
	var b strings.Builder
	for i := 0; i < len(comp); i++ {
		if comp[i] == '%' && i+2 < len(comp) && isHex(comp[i+1]) && isHex(comp[i+2]) {
			b.WriteByte(unhex(comp[i+1])<<4 | unhex(comp[i+2]))
			i += 2
			continue
		}
		b.WriteByte(comp[i])
	}
	return b.String()
}

// ValidName says whether comp is the path component of some server-side
// name: whether the name it decodes to is shown as comp again. "50%",
// "%zz", "%41" and "%2f" are not ("%" must be "%25", and only "%", "/" and
// NUL are escaped, in upper case); mkdir, create and rename refuse them with
// EINVAL before anything is made on the server.
func ValidName(comp string) bool {
	return comp != "" && EncodeName(DecodeName(comp)) == comp
}

// checkNewName is ValidName as an errno, for mkdir, create and rename.
func checkNewName(comp string) syscall.Errno {
	if !ValidName(comp) {
		return syscall.EINVAL
	}
	return 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// Named is an entry with a server-side name and a stable id.
type Named interface {
	ServerName() string
	ServerID() string
}

// DisplayNames gives each entry its path component. Entries must be ordered
// oldest first: the oldest keeps a shared name, the others get "~<id>"
// (again, until the name is free: every component is unique).
func DisplayNames[T Named](entries []T) []string {
	out := make([]string, len(entries))
	taken := make(map[string]bool, len(entries))
	for _, e := range entries {
		taken[EncodeName(e.ServerName())] = true // plain names first: a "~" never takes one
	}
	plain := make(map[string]bool, len(entries))
	for i, e := range entries {
		n := EncodeName(e.ServerName())
		if plain[n] {
			for taken[n] {
				n += "~" + EncodeName(e.ServerID())
			}
		}
		plain[n] = true
		taken[n] = true
		out[i] = n
	}
	return out
}

// dedupe drops entries that repeat an earlier one's name and id: one
// object listed twice (vcsim lists a file twice after an overwrite) is one
// entry, the last listed.
func dedupe[T Named](entries []T) []T {
	type key struct{ name, id string }
	last := make(map[key]int, len(entries))
	for i, e := range entries {
		last[key{e.ServerName(), e.ServerID()}] = i
	}
	if len(last) == len(entries) {
		return entries
	}
	out := make([]T, 0, len(last))
	for i, e := range entries {
		if last[key{e.ServerName(), e.ServerID()}] == i {
			out = append(out, e)
		}
	}
	return out
}

// listing is a directory's children in order, with their path components.
type listing[T Named] struct {
	entries []T
	names   []string
}

func newListing[T Named](entries []T) listing[T] {
	entries = dedupe(entries)
	return listing[T]{entries: entries, names: DisplayNames(entries)}
}

// find returns the child shown as name.
func (l listing[T]) find(name string) (T, bool) {
	for i, n := range l.names {
		if n == name {
			return l.entries[i], true
		}
	}
	var zero T
	return zero, false
}

// stream lists the children for readdir; kind keys their inode numbers.
func (l listing[T]) stream(mode uint32, kind string, idPrefix string) gofs.DirStream {
	out := make([]fuse.DirEntry, len(l.entries))
	for i, e := range l.entries {
		out[i] = fuse.DirEntry{Name: l.names[i], Mode: mode, Ino: ino(kind, idPrefix+e.ServerID())}
	}
	return gofs.NewListDirStream(out)
}

// listingMemo keeps the last listing built from one source list, since
// `ls -l` looks every entry up and each lookup would otherwise rebuild it.
type listingMemo[T Named] struct {
	mu  sync.Mutex
	key any // identity of the source list (its first element's address)
	n   int
	l   listing[T]
}

// get returns the memoized listing for the source list (key, n), or builds it.
func (m *listingMemo[T]) get(key any, n int, build func() listing[T]) listing[T] {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n > 0 && m.key == key && m.n == n {
		return m.l
	}
	m.key, m.n, m.l = key, n, build()
	return m.l
}
