package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmware/govmomi/cli"

	_ "github.com/vmware/govmomi/cli/library"
)

// govcRun runs govc (the same cli packages test/govc builds) in-process.
func govcRun(t *testing.T, s *Server, args ...string) {
	t.Helper()
	t.Setenv("GOVC_URL", s.URL.String())
	t.Setenv("GOVC_INSECURE", "1")
	if rc := cli.Run(args); rc != 0 {
		t.Fatalf("govc %v: exit %d", args, rc)
	}
}

// govc library.import and library.export go through our update sessions:
// importing a name again replaces the file, without a second entry.
func TestGovcImportExport(t *testing.T) {
	f := newUpdateFixture(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "data.bin")
	for i, content := range [][]byte{bytes.Repeat([]byte("v1"), 300000), []byte("v2, shorter")} {
		if err := os.WriteFile(src, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			govcRun(t, f.s, "library.import", "-n", "imported", "demo-library", src)
		} else {
			govcRun(t, f.s, "library.import", "demo-library/imported", src)
		}
		out := filepath.Join(dir, "out.bin")
		os.Remove(out)
		govcRun(t, f.s, "library.export", "demo-library/imported/data.bin", out)
		got, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("round %d: exported %d bytes (%v), want %d", i, len(got), err, len(content))
		}
		st := f.state("demo-library", "imported")
		if st.files["data.bin"] != 1 || len(st.files) != 1 || st.size != int64(len(content)) {
			t.Fatalf("round %d: files %v size %d", i, st.files, st.size)
		}
	}
}

// An OVF template imports as one session holding the descriptor and the files
// it references (validate insists on them); .vmdk bytes are kept as sent.
func TestGovcImportOVF(t *testing.T) {
	f := newUpdateFixture(t)
	dir := t.TempDir()
	disk := bytes.Repeat([]byte("disk"), 1000)
	if err := os.WriteFile(filepath.Join(dir, "tmpl.ovf"), []byte(testOVF), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "disk1.vmdk"), disk, 0o644); err != nil {
		t.Fatal(err)
	}
	govcRun(t, f.s, "library.import", "demo-library", filepath.Join(dir, "tmpl.ovf"))
	st := f.state("demo-library", "tmpl")
	if len(st.files) != 2 || string(st.bytes["tmpl.ovf"]) != testOVF || !bytes.Equal(st.bytes["disk1.vmdk"], disk) {
		t.Fatalf("files %v", st.files)
	}
}
