package test

// What a running mount shows of itself: `vspherefs status --json` and the
// Prometheus metrics of --metrics.

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/status"
	"github.com/vspherefs/vspherefs/test/sim"
)

func statusJSON(t *testing.T, m *Mount) status.Snapshot {
	t.Helper()
	out, err := exec.Command(binary, "status", "--json", m.Dir).Output()
	if err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	var s status.Snapshot
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return s
}

// findTransfer is the first transfer in flight whose path holds name.
func findTransfer(s status.Snapshot, name string) *status.Transfer {
	for i := range s.Transfers {
		if strings.Contains(s.Transfers[i].Path, name) {
			return &s.Transfers[i]
		}
	}
	return nil
}

// A throttled library read shows in `status --json` while it runs, its bytes
// growing, and is gone once it is over; the mount's identity, API call counts
// and sessions are there too.
func TestOpsStatusShowsGrowingTransfer(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	s.Library.SetRate(2 << 20) // 64 MiB would take half a minute
	defer s.Library.SetRate(0)
	m := mountWithDir(t, s, nil, "VSPHEREFS_PROGRESS_EVERY=300ms")
	cat := exec.Command("cat", m.Path("libraries", "demo-library", "big", "big.bin"))
	cat.Stdout = io.Discard
	if err := cat.Start(); err != nil {
		t.Fatal(err)
	}
	catDone := make(chan error, 1)
	go func() { catDone <- cat.Wait() }()
	t.Cleanup(func() { s.Library.SetRate(0); <-catDone })

	var first, grown *status.Transfer
	var snap status.Snapshot
	for i := 0; i < 300 && grown == nil; i++ {
		snap = statusJSON(t, m)
		if tr := findTransfer(snap, "big.bin"); tr != nil && tr.Done > 0 {
			if first == nil {
				first = tr
			} else if tr.ID == first.ID && tr.Done > first.Done {
				grown = tr
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if grown == nil {
		t.Fatalf("no library transfer of big.bin with growing bytes; last status: %+v", snap)
	}
	if grown.Kind != "library download" || grown.Host != s.URL.Host || grown.State != "streaming" || grown.Rate <= 0 {
		t.Errorf("transfer %+v: want a streaming library download from %s with a rate", grown, s.URL.Host)
	}
	// Shown by its path in the mount; the URL path (never its query) besides.
	if grown.Path != "libraries/demo-library/big/big.bin" || grown.URLPath == "" || grown.URLPath == grown.Path {
		t.Errorf("transfer shows path %q, URL path %q; want libraries/demo-library/big/big.bin and the URL's", grown.Path, grown.URLPath)
	}
	if strings.ContainsAny(grown.URLPath, "?&") {
		t.Errorf("transfer URL path %q shows a query", grown.URLPath)
	}
	if snap.PID != m.cmd.Process.Pid || snap.Mountpoint != m.Dir || snap.Server != s.URL.Host {
		t.Errorf("status names pid %d, %q, %q; want %d, %q, %q", snap.PID, snap.Mountpoint, snap.Server, m.cmd.Process.Pid, m.Dir, s.URL.Host)
	}
	if snap.Calls["downloadsession/file:prepare"] == 0 || snap.Sessions["download"] != 1 {
		t.Errorf("status counts %v calls and %v sessions; want the prepare and one download session", snap.Calls, snap.Sessions)
	}
	// A long transfer logs its progress at INFO.
	if !m.WaitLog("level=INFO msg=\"transfer progress\" kind=\"library download\"", "big.bin", "rate=") {
		t.Errorf("no progress line for the slow read:\n%s", m.Log())
	}
	s.Library.SetRate(0)
	if err := <-catDone; err != nil {
		t.Fatalf("cat: %v", err)
	}
	catDone <- nil
	for i := 0; ; i++ {
		if findTransfer(statusJSON(t, m), "big.bin") == nil {
			break
		}
		if i == 100 {
			t.Fatal("the transfer is still listed after the read ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A file open for writing is listed as staged until its close commits it.
	w, err := os.Create(m.Path("libraries", "demo-library", "hello", "held.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("held"); err != nil {
		t.Fatal(err)
	}
	held := statusJSON(t, m).Held
	if len(held) != 1 || held[0].Path != "libraries/demo-library/hello/held.txt" || held[0].State != "open for writing" {
		t.Errorf("staged files while open: %+v", held)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := statusJSON(t, m); len(st.Held) != 0 || st.Commits != 0 {
		t.Errorf("after the commit: staged %+v, %d commits pending", st.Held, st.Commits)
	}
	// A commit is listed by the file's path while it runs (create to DONE),
	// and so is its upload.
	s.Updates.SetPutDelay(2 * time.Second)
	defer s.Updates.SetPutDelay(0)
	closed := make(chan error, 1)
	go func() {
		closed <- os.WriteFile(m.Path("libraries", "demo-library", "hello", "slow.txt"), []byte("slow"), 0o644)
	}()
	const slow = "libraries/demo-library/hello/slow.txt"
	var commit, upload *status.Transfer
	for i := 0; i < 100 && (commit == nil || upload == nil); i++ {
		for _, tr := range statusJSON(t, m).Transfers {
			switch {
			case tr.Path == slow && tr.Kind == "library commit" && tr.State == "committing":
				commit = &tr
			case tr.Path == slow && tr.Kind == "library upload" && tr.URLPath != "":
				upload = &tr
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if commit == nil || upload == nil {
		t.Errorf("while %s commits: commit %+v, upload %+v; want both listed by its path", slow, commit, upload)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	s.Updates.SetPutDelay(0)
	if ts := statusJSON(t, m).Transfers; len(ts) != 0 {
		t.Errorf("after the commit: %+v in flight", ts)
	}
	// The text form says the same in words.
	out, err := exec.Command(binary, "status", m.Dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), s.URL.Host) || !strings.Contains(string(out), "API calls since mount") {
		t.Errorf("status: %v\n%s", err, out)
	}
}

// A throttled guest read shows in `status --json` by its path under vms/,
// with the ESXi host and the URL path of its transfer; the text form names
// it too.
func TestOpsStatusShowsGuestTransfer(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	s.Guest.SetRate(128 << 10) // the 1 MiB blob takes about 8s
	defer s.Guest.SetRate(0)
	m := mountWithDir(t, s, nil, "GOVC_GUEST_LOGIN="+sim.GuestLoginString())
	want := "vms/" + guestVM + guestBlob
	cat := exec.Command("cat", m.Path(want))
	cat.Stdout = io.Discard
	if err := cat.Start(); err != nil {
		t.Fatal(err)
	}
	catDone := make(chan error, 1)
	go func() { catDone <- cat.Wait() }()
	t.Cleanup(func() { s.Guest.SetRate(0); <-catDone })

	var tr *status.Transfer
	var snap status.Snapshot
	for i := 0; i < 300 && tr == nil; i++ {
		snap = statusJSON(t, m)
		if got := findTransfer(snap, "blob.bin"); got != nil && got.Done > 0 {
			tr = got
		}
		time.Sleep(50 * time.Millisecond)
	}
	if tr == nil {
		t.Fatalf("no guest transfer of blob.bin; last status: %+v", snap)
	}
	if tr.Path != want || tr.Kind != "guest download" || tr.State != "streaming" || tr.URLPath != "/guestFile" || tr.Host == "" {
		t.Errorf("transfer %+v: want a streaming guest download of %s, URL path /guestFile, with its host", tr, want)
	}
	out, err := exec.Command(binary, "status", m.Dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "guest download") {
		t.Errorf("status: %v\n%s", err, out)
	}
	s.Guest.SetRate(0)
	if err := <-catDone; err != nil {
		t.Fatalf("cat: %v", err)
	}
	catDone <- nil
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// scrape returns the value of each sample of /metrics, keyed by its name and labels as printed.
func scrape(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	// The harness sees the FUSE mount a moment before the mount has bound
	// its metrics listener (it does so before it says READY).
	deadline := time.Now().Add(10 * time.Second)
	res, err := http.Get("http://" + addr + "/metrics")
	for err != nil && errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		res, err = http.Get("http://" + addr + "/metrics")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

// The metrics' counters move after a read and after a write.
func TestOpsMetricsMoveAfterReadAndWrite(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	addr := freePort(t)
	m := mount(t, s, "--metrics", addr, "--guest-login", sim.GuestLoginString())
	before := scrape(t, addr)
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "vspherefs_cache_limit_bytes"} {
		if _, ok := before[name]; !ok {
			t.Errorf("no %s in /metrics", name)
		}
	}
	read := `vspherefs_transfer_bytes_total{direction="read",tree="libraries"}`
	written := `vspherefs_transfer_bytes_total{direction="written",tree="libraries"}`
	commits := `vspherefs_library_commits_total{outcome="ok"}`
	if _, err := os.ReadFile(m.Path("libraries", "demo-library", "multi", "a.bin")); err != nil {
		t.Fatal(err)
	}
	afterRead := scrape(t, addr)
	if afterRead[read]-before[read] != 1<<20 {
		t.Errorf("%s moved by %v after reading 1 MiB, want 1048576", read, afterRead[read]-before[read])
	}
	if afterRead["vspherefs_cache_misses_total"] <= before["vspherefs_cache_misses_total"] {
		t.Errorf("cache misses did not move after a cold read")
	}
	calls := 0.0
	for k, v := range afterRead {
		if strings.HasPrefix(k, `vspherefs_api_calls_total{method="downloadsession/file:prepare",outcome="ok"}`) {
			calls += v
		}
	}
	if calls == 0 {
		t.Errorf("no prepare call counted")
	}
	if err := os.WriteFile(m.Path("libraries", "demo-library", "hello", "new.txt"), []byte(strings.Repeat("x", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	afterWrite := scrape(t, addr)
	if afterWrite[written]-afterRead[written] != 1000 {
		t.Errorf("%s moved by %v after writing 1000 bytes", written, afterWrite[written]-afterRead[written])
	}
	if afterWrite[commits]-afterRead[commits] != 1 {
		t.Errorf("%s moved by %v after one commit", commits, afterWrite[commits]-afterRead[commits])
	}
	guestRead := `vspherefs_transfer_bytes_total{direction="read",tree="vms"}`
	b, err := os.ReadFile(m.Path("vms", runningVM, "etc", "hostname"))
	if err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, addr)[guestRead] - afterWrite[guestRead]; got != float64(len(b)) {
		t.Errorf("%s moved by %v after reading %d bytes of a guest file", guestRead, got, len(b))
	}
	if ok, _ := regexp.MatchString(`vspherefs_api_call_duration_seconds_count\{method="updatesession:create"\}`, strings.Join(keys(afterWrite), "\n")); !ok {
		t.Errorf("no latency histogram of updatesession:create")
	}
}

func keys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// An export shows in `status --json` as its lease, by the package's folder,
// and its disk's transfer, by the disk's file (here held by a stall until
// --timeout fails it).
func TestOpsStatusShowsExport(t *testing.T) {
	t.Parallel()
	s := sim.StartT(t)
	simVM(t, s, exportVM, true)
	m := mount(t, s, "--timeout", "4s")
	addFault(t, s, "GET /nfc/*=stall-after:256KiB")
	defer s.Faults.Clear()
	folder := "exports/" + exportVM
	disk := folder + "/" + exportVM + "-disk-0.vmdk"
	statDone := make(chan error, 1)
	go func() { _, err := os.Stat(m.Path(disk)); statDone <- err }()
	var lease, fetch *status.Transfer
	var snap status.Snapshot
	for i := 0; i < 200 && (lease == nil || fetch == nil); i++ {
		snap = statusJSON(t, m)
		for _, tr := range snap.Transfers {
			switch {
			case tr.Path == folder && tr.Kind == "export lease" && tr.State == "streaming disks":
				lease = &tr
			case tr.Path == disk && tr.Kind == "export disk download" && strings.Contains(tr.URLPath, "/nfc/") && tr.Done > 0:
				fetch = &tr
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lease == nil || fetch == nil {
		t.Errorf("export of %s: lease %+v, disk transfer %+v; last status: %+v", folder, lease, fetch, snap)
	}
	if err := <-statDone; err == nil {
		t.Errorf("stat of a disk whose transfer stalled succeeded")
	}
}
