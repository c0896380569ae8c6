package fs

import "testing"

type named struct{ name, id string }

func (n named) ServerName() string { return n.name }
func (n named) ServerID() string   { return n.id }

func TestNamesRoundTrip(t *testing.T) {
	for _, s := range []string{"", ".", "..", "a/b", "100%", "%2F", "x\x00y", "plain", "...", "a%b/c"} {
		enc := EncodeName(s)
		if enc == "" || enc == "." || enc == ".." || containsAny(enc, "/\x00") {
			t.Errorf("%q encodes to unusable %q", s, enc)
		}
		if got := DecodeName(enc); got != s {
			t.Errorf("%q -> %q -> %q", s, enc, got)
		}
	}
}

func containsAny(s, chars string) bool {
	for i := range s {
		for j := range chars {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

func TestDisplayNamesDedupe(t *testing.T) {
	got := DisplayNames([]named{{"lib", "1"}, {"lib", "2"}, {"a/b", "3"}, {"lib", "4"}})
	want := []string{"lib", "lib~2", "a%2Fb", "lib~4"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
