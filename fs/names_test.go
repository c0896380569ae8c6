package fs

import (
	"strings"
	"testing"
)

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

// TestValidName: the names mkdir, create and rename take are exactly those
// the rule shows back as given.
func TestValidName(t *testing.T) {
	for comp, want := range map[string]bool{
		"plain": true, "%25": true, "%2F": true, "a%2Fb": true, "%00": true, "%": true,
		"%2E": true, "%2E%2E": true, "héllo-日本": true, "x~1": true,
		"50%": false, "%zz": false, "%2f": false, "%41": false, "a%": false, "%2E%2E%2E": false,
		"%2Ex": false, "%%": false, "": false,
	} {
		if got := ValidName(comp); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", comp, got, want)
		}
	}
}

func TestDisplayNamesUnique(t *testing.T) {
	got := DisplayNames([]named{{"a", "x"}, {"a~x", "1"}, {"a", "x2"}, {"a", "x"}})
	seen := map[string]bool{}
	for _, n := range got {
		if seen[n] {
			t.Fatalf("%q twice in %v", n, got)
		}
		seen[n] = true
	}
	if got[0] != "a" || got[1] != "a~x" {
		t.Fatalf("plain names not kept: %v", got)
	}
	l := newListing([]named{{"x.bin", "x.bin"}, {"y", "y"}, {"x.bin", "x.bin"}})
	if len(l.names) != 2 || l.names[0] != "y" || l.names[1] != "x.bin" {
		t.Fatalf("one object listed twice: %v", l.names)
	}
}

// FuzzNames: every server-side name encodes to a usable path component
// that decodes back to it and is a valid new name; every valid component
// decodes to a name shown as that component; sibling names are unique.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"", ".", "..", "%", "%25", "%zz", "%2F", "50%", "a/b", "x\x00y", "日本", "a~b", strings.Repeat("n", 255)} {
		f.Add(s, s+"~")
	}
	f.Fuzz(func(t *testing.T, name, other string) {
		enc := EncodeName(name)
		if enc == "" || enc == "." || enc == ".." || strings.ContainsAny(enc, "/\x00") {
			t.Fatalf("%q encodes to unusable %q", name, enc)
		}
		if got := DecodeName(enc); got != name {
			t.Fatalf("%q -> %q -> %q", name, enc, got)
		}
		if !ValidName(enc) {
			t.Fatalf("%q encodes to %q, which ValidName refuses", name, enc)
		}
		if comp := other; comp != "" && !strings.ContainsAny(comp, "/\x00") && ValidName(comp) {
			if got := EncodeName(DecodeName(comp)); got != comp {
				t.Fatalf("valid %q shows as %q", comp, got)
			}
		}
		names := DisplayNames([]named{{name, "1"}, {other, "2"}, {name, other}, {other + "~2", "3"}})
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] || n == "" || strings.ContainsAny(n, "/\x00") {
				t.Fatalf("display names %q of %q, %q", names, name, other)
			}
			seen[n] = true
		}
	})
}
