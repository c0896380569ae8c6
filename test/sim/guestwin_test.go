package sim

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/types"
)

// TestGuestWindows: the demo's Windows VM has drives C: and D:, Windows
// paths, Windows attributes (hidden, readOnly, 100 ns times, no mode or
// owner), refuses invalid names and guards read-only files as Windows does.
func TestGuestWindows(t *testing.T) {
	e := newGuestEnvOf(t, DemoWindowsVM)
	ctx := context.Background()
	host := func(p string) string { return filepath.Join(e.dir, filepath.FromSlash(p)) }

	// Drive roots list; a missing drive is FileNotFound; no drive is InvalidArgument.
	for _, d := range []string{`C:\`, `c:\`, `D:\`, `C:`} {
		if _, err := e.fm.ListFiles(ctx, e.auth, d, 0, 0, ""); err != nil {
			t.Errorf("list %s: %v", d, err)
		}
	}
	if _, err := e.fm.ListFiles(ctx, e.auth, `E:\`, 0, 0, ""); !fault.Is(err, &types.FileNotFound{}) {
		t.Errorf("list E:\\: %v", err)
	}
	for _, p := range []string{`/`, `\Users`, `C:Users`, `C:\a:b`, `C:\a?`} {
		if _, err := e.fm.ListFiles(ctx, e.auth, p, 0, 0, ""); !fault.Is(err, &types.InvalidArgument{}) {
			t.Errorf("list %q: %v", p, err)
		}
	}

	ls, err := e.fm.ListFiles(ctx, e.auth, `C:\`, 0, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]*types.GuestWindowsFileAttributes{}
	for _, f := range ls.Files {
		a, ok := f.Attributes.(*types.GuestWindowsFileAttributes)
		if !ok {
			t.Fatalf("%s: attributes %T", f.Path, f.Attributes)
		}
		attrs[f.Path] = a
	}
	if a := attrs["pagefile.sys"]; a == nil || !*a.Hidden || *a.ReadOnly || !a.ModificationTime.Equal(ntfsTime(guestDemoTime)) {
		t.Errorf("pagefile.sys: %+v", a)
	}
	if a := attrs["ProgramData"]; a == nil || !*a.Hidden {
		t.Errorf("ProgramData: %+v", a)
	}
	if a := attrs["Users"]; a == nil || *a.Hidden || a.CreateTime == nil {
		t.Errorf("Users: %+v", a)
	}
	info, u := e.fromGuest(t, `C:\Users\Administrator\Desktop\notes.txt`)
	if _, ok := info.Attributes.(*types.GuestWindowsFileAttributes); !ok {
		t.Errorf("FromGuest attributes %T", info.Attributes)
	}
	if _, b, _ := e.get(t, u); string(b) != DemoWindowsVM+": guest files through vspherefs\r\n" {
		t.Errorf("notes.txt: %q", b)
	}
	// forward slashes are Windows paths too
	if _, u := e.fromGuest(t, "D:/data/archive.bin"); true {
		want, _ := io.ReadAll(DemoBytes(`guestD:\data\archive.bin`, 1<<20+11))
		if _, b, _ := e.get(t, u); !bytes.Equal(b, want) {
			t.Errorf("archive.bin: %d bytes", len(b))
		}
	}

	// Times are kept to 100 ns; readOnly and hidden are set; POSIX attributes
	// (as govc sends) only set times.
	mt := time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
	ro, hid := true, true
	err = e.fm.ChangeFileAttributes(ctx, e.auth, `C:\Users\Administrator\Documents\report.bin`, &types.GuestWindowsFileAttributes{
		GuestFileAttributes: types.GuestFileAttributes{ModificationTime: &mt}, ReadOnly: &ro, Hidden: &hid,
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(host("C/Users/Administrator/Documents/report.bin"))
	if err != nil || !fi.ModTime().Equal(mt.Truncate(100)) || fi.Mode().Perm()&0o222 != 0 {
		t.Fatalf("after chattr: %v %v %v", fi.ModTime(), fi.Mode(), err)
	}
	err = e.fm.ChangeFileAttributes(ctx, e.auth, `C:\Windows\System32\drivers\etc\hosts`, &types.GuestPosixFileAttributes{
		GuestFileAttributes: types.GuestFileAttributes{ModificationTime: &mt}, Permissions: 0o600,
	})
	if err != nil {
		t.Fatalf("POSIX attributes on Windows: %v", err)
	}

	// A read-only file cannot be removed or replaced; it can be moved.
	ronly := `C:\Users\Administrator\Documents\report.bin`
	if err := e.fm.DeleteFile(ctx, e.auth, ronly); !fault.Is(err, &types.GuestPermissionDenied{}) {
		t.Errorf("delete read-only: %v", err)
	}
	if err := e.fm.MoveFile(ctx, e.auth, `C:\Windows\System32\drivers\etc\hosts`, ronly, true); !fault.Is(err, &types.GuestPermissionDenied{}) {
		t.Errorf("move over read-only: %v", err)
	}
	if _, err := e.fm.InitiateFileTransferToGuest(ctx, e.auth, ronly, &types.GuestWindowsFileAttributes{}, 1, true); !fault.Is(err, &types.GuestPermissionDenied{}) {
		t.Errorf("upload over read-only: %v", err)
	}
	if err := e.fm.MoveFile(ctx, e.auth, ronly, `C:\Temp\report.bin`, false); err != nil {
		t.Errorf("move read-only: %v", err)
	}
	ls, err = e.fm.ListFiles(ctx, e.auth, `C:\Temp\report.bin`, 0, 0, "")
	if err != nil || len(ls.Files) != 1 || !*ls.Files[0].Attributes.(*types.GuestWindowsFileAttributes).Hidden {
		t.Errorf("moved file keeps hidden: %+v %v", ls, err)
	}

	// Drive roots stay; names with ':' are refused; mkdir makes Windows paths.
	if err := e.fm.DeleteDirectory(ctx, e.auth, `D:\`, true); !fault.Is(err, &types.GuestPermissionDenied{}) {
		t.Errorf("delete D:\\: %v", err)
	}
	if err := e.fm.MakeDirectory(ctx, e.auth, `C:\Temp\x:y`, false); !fault.Is(err, &types.InvalidArgument{}) {
		t.Errorf("mkdir x:y: %v", err)
	}
	if err := e.fm.MakeDirectory(ctx, e.auth, `E:\new`, true); !fault.Is(err, &types.FileNotFound{}) {
		t.Errorf("mkdir -p on a missing drive: %v", err)
	}
	if err := e.fm.MakeDirectory(ctx, e.auth, `C:\Temp\a\b`, true); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(host("C/Temp/a/b")); err != nil || !fi.IsDir() {
		t.Errorf("mkdir -p: %v", err)
	}
	p, err := e.fm.CreateTemporaryFile(ctx, e.auth, "tmp", ".txt", "")
	if err != nil || !strings.HasPrefix(p, `C:\Windows\Temp\tmp`) {
		t.Errorf("temporary file: %q %v", p, err)
	}
}

// TestGovcGuestWindows: govc's guest commands work on the Windows guest.
func TestGovcGuestWindows(t *testing.T) {
	e := newGuestEnvOf(t, DemoWindowsVM)
	g := newGovc(t, e.s, DemoWindowsVM, "root:vmware")
	out := g.must("guest.ls", `C:\`)
	for _, want := range []string{"Users", "Windows", "pagefile.sys", "ProgramData"} {
		if !strings.Contains(out, want) {
			t.Errorf("guest.ls C:\\ lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "rw") {
		t.Errorf("guest.ls shows POSIX modes for Windows files:\n%s", out)
	}
	if out := g.must("guest.download", `C:\Windows\System32\drivers\etc\hosts`, "-"); out != "127.0.0.1 localhost\r\n" {
		t.Errorf("download: %q", out)
	}
	src := filepath.Join(t.TempDir(), "up.txt")
	os.WriteFile(src, []byte("from govc\n"), 0o644)
	g.must("guest.mkdir", "-p", `C:\Temp\up\sub`)
	g.must("guest.upload", src, `C:\Temp\up\sub\up.txt`)
	if b, _ := os.ReadFile(filepath.Join(e.dir, "C/Temp/up/sub/up.txt")); string(b) != "from govc\n" {
		t.Errorf("uploaded %q", b)
	}
	g.must("guest.mv", `C:\Temp\up`, `D:\up`)
	if out := g.must("guest.download", `D:\up\sub\up.txt`, "-"); out != "from govc\n" {
		t.Errorf("download after mv: %q", out)
	}
	g.must("guest.touch", "-d", "Mon Jan  2 15:04:05 UTC 2006", `D:\up\sub\up.txt`)
	g.must("guest.rm", `D:\up\sub\up.txt`)
	g.must("guest.rmdir", `D:\up\sub`)
	if out, err := g.run("guest.rm", `C:\Windows\win.ini`); err == nil || !strings.Contains(out, "GuestPermissionDenied") {
		t.Errorf("rm of a read-only file: %v %s", err, out)
	}
}
