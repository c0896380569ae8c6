package fs

// A descriptor names its inode number and its mount (mnt_id in
// /proc/<pid>/fdinfo). Inode numbers are ours alone only within our mount:
// a file of another filesystem may have the same number, so fdpeers.go
// matches the mount too, by the superblock (device) of ours, which every
// bind mount of it shares.

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// mountIdent is the set of mount ids that show this filesystem.
type mountIdent struct {
	dev string // major:minor of the superblock, as /proc/self/mountinfo gives it

	mu  sync.Mutex
	ids map[string]bool
}

// newMountIdent finds the mount at dir in /proc/self/mountinfo (the last
// one there: a mount on top of others is listed after them); nil if it
// cannot be read, which makes every descriptor match (the old behaviour).
func newMountIdent(dir string) *mountIdent {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	dev := ""
	for _, f := range mountinfo() {
		if unescapeMountinfo(f[4]) == abs {
			dev = f[2]
		}
	}
	if dev == "" {
		return nil
	}
	return &mountIdent{dev: dev, ids: map[string]bool{}}
}

// has says whether mount id id shows this filesystem; an id not seen yet
// (a bind mount made since) reads mountinfo again.
func (m *mountIdent) has(id string) bool {
	if m == nil || id == "" {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids[id] {
		return true
	}
	for _, f := range mountinfo() {
		if f[2] == m.dev {
			m.ids[f[0]] = true
		}
	}
	return m.ids[id]
}

// mountinfo is /proc/self/mountinfo, a slice of fields a line (at least 5).
func mountinfo() [][]string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 5 {
			out = append(out, fs)
		}
	}
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space…).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}
