package fs

import (
	"fmt"
	"strings"
	"sync"

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
// that starts no valid escape is taken literally.
func DecodeName(comp string) string {
	if comp == "%" {
		return ""
	}
	if !strings.Contains(comp, "%") {
		return comp
	}
	var b strings.Builder
	for i := 0; i < len(comp); i++ {
		if comp[i] == '%' && i+2 < len(comp)+0 && isHex(comp[i+1]) && isHex(comp[i+2]) {
			b.WriteByte(unhex(comp[i+1])<<4 | unhex(comp[i+2]))
			i += 2
			continue
		}
		b.WriteByte(comp[i])
	}
	return b.String()
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
// oldest first: the oldest keeps a shared name, the others get "~<id>".
func DisplayNames[T Named](entries []T) []string {
	out := make([]string, len(entries))
	taken := make(map[string]bool, len(entries))
	for i, e := range entries {
		n := EncodeName(e.ServerName())
		if taken[n] {
			n += "~" + EncodeName(e.ServerID())
		}
		taken[n] = true
		out[i] = n
	}
	return out
}

// listing is a directory's children in order, with their path components.
type listing[T Named] struct {
	entries []T
	names   []string
}

func newListing[T Named](entries []T) listing[T] {
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
