package fs

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeepRecoveredLongName: a component too long for the local
// filesystem is shortened in recovery/, the full origin kept in INDEX, and
// a taken name gets a number.
func TestKeepRecoveredLongName(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(t.TempDir(), "staged")
	if err := os.WriteFile(src, []byte("the bytes, and more"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", 300) // 600 bytes: an NTFS name can be that long in UTF-8
	origin := "vms/win/C:/Users/" + long
	var kept []string
	for range 2 {
		p, err := keepRecovered(dir, src, 9, false, recovered{Tree: "vms", Origin: origin, Reason: "commit failed", Call: "PUT", Fault: "reset"})
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, p)
		if b, err := os.ReadFile(p); err != nil || string(b) != "the bytes" {
			t.Fatalf("%s: %q, %v", p, b, err)
		}
		if len(filepath.Base(p)) > 255 || !strings.HasPrefix(p, filepath.Join(dir, "vms", "win", "C:", "Users")) {
			t.Fatalf("kept at %s", p)
		}
	}
	if kept[0] == kept[1] || kept[1] != kept[0]+".1" {
		t.Fatalf("second copy at %s, first at %s", kept[1], kept[0])
	}
	f, err := os.Open(filepath.Join(dir, "INDEX"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []recovered
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e recovered
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, e)
	}
	if len(lines) != 2 || lines[0].Origin != origin || lines[0].Recovery != kept[0] || lines[1].Recovery != kept[1] ||
		lines[0].Fault != "reset" || lines[0].Size != 9 || lines[0].Time.IsZero() {
		t.Fatalf("INDEX: %+v", lines)
	}
}

// TestRescueUsesSidecar: a staged file with a sidecar is moved to its origin.
func TestRescueUsesSidecar(t *testing.T) {
	staged := filepath.Join(t.TempDir(), "f-1")
	os.WriteFile(staged, []byte("x"), 0o600)
	writeOrigin(staged, recovered{Tree: "libraries", Origin: "libraries/l/i/a%2Fb", Name: "a/b"})
	e, ok := readOrigin(staged)
	if !ok || e.Origin != "libraries/l/i/a%2Fb" || e.Name != "a/b" {
		t.Fatalf("sidecar: %+v %v", e, ok)
	}
	dir := t.TempDir()
	p, err := keepRecovered(dir, staged, -1, true, e)
	if err != nil || p != filepath.Join(dir, "libraries", "l", "i", "a%2Fb") {
		t.Fatalf("kept at %s, %v", p, err)
	}
	if _, err := os.Stat(staged); !os.IsNotExist(err) {
		t.Fatalf("moved, yet the staged file is there: %v", err)
	}
}
