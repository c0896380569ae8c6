package fs

import "testing"

// Guest paths come from the nodes' own links, not from go-fuse's tree (none
// here): a rename of a directory moves what is below it.
func TestGuestPathsCarriedByNodes(t *testing.T) {
	top := &guestNode{}
	dir := top.child("tmp")
	sub := dir.child("a b")
	file := sub.child("f.txt")
	for _, c := range []struct {
		n    *guestNode
		want string
	}{{top, "/"}, {&dir, "/tmp"}, {&sub, "/tmp/a b"}, {&file, "/tmp/a b/f.txt"}} {
		if got := c.n.guestPath(); got != c.want {
			t.Errorf("path %q, want %q", got, c.want)
		}
	}
	other := top.child("var")
	sub.moveTo(&other, "moved")
	if got := file.guestPath(); got != "/var/moved/f.txt" {
		t.Errorf("after the directory's rename: %q", got)
	}
	file.moveTo(&dir, "g.txt")
	if got := file.guestPath(); got != "/tmp/g.txt" {
		t.Errorf("after the file's rename: %q", got)
	}
}
