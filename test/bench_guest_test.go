package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/guest"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/test/sim"
)

// BenchmarkGuestRead compares, in one run, a cold `dd` of a guest file
// through a fresh mount with curl GET of a fresh FromGuest URL of the same
// file (InitiateFileTransferFromGuest made by govmomi, then curl).
func BenchmarkGuestRead(b *testing.B) {
	size := benchSize()
	s := sim.StartT(b)
	capSim(b, s) // BENCH_TC: the 1 Gb/s mode
	c := context.Background()
	putGuestFile(b, s, "/tmp/bench.bin", size)
	gc, _, err := s.Client(c)
	if err != nil {
		b.Fatal(err)
	}
	vm, err := find.NewFinder(gc.Client).VirtualMachine(c, guestVM)
	if err != nil {
		b.Fatal(err)
	}
	fm, err := guest.NewOperationsManager(gc.Client, vm.Reference()).FileManager(c)
	if err != nil {
		b.Fatal(err)
	}
	auth := &types.NamePasswordAuthentication{Username: "root", Password: "vmware"}
	var curl, cold, curlCPU, mountCPU, ddCPU, simCurl, simCold time.Duration
	for i := 0; i < b.N; i++ {
		info, err := fm.InitiateFileTransferFromGuest(c, auth, "/tmp/bench.bin")
		if err != nil {
			b.Fatal(err)
		}
		u, err := fm.TransferURL(c, info.Url)
		if err != nil {
			b.Fatal(err)
		}
		sim0 := selfCPU()
		wall, cpu := timeCPU(b, "curl", "-sf", "--cacert", mustCert(b, s), "-o", "/dev/null", u.String())
		simCurl += selfCPU() - sim0
		curl, curlCPU = curl+wall, curlCPU+cpu
		m := mount(b, s, "--guest-login", sim.GuestLoginString(), "--cache-size", "512MiB")
		cpu0, _ := cpuTime(b, m)
		sim0 = selfCPU()
		wall, cpu = timeCPU(b, "dd", "if="+m.Path("vms", guestVM, "tmp", "bench.bin"), "of=/dev/null", "bs=1M")
		simCold += selfCPU() - sim0
		cold, ddCPU = cold+wall, ddCPU+cpu
		cpu1, _ := cpuTime(b, m)
		mountCPU += cpu1 - cpu0
		if i == b.N-1 {
			b.ReportMetric(float64(rssKiB(b, m))/1024, "rss-MiB")
		}
		m.Unmount(b)
	}
	n := int64(b.N) * size
	b.ReportMetric(mbps(n, curl), "curl-MB/s")
	b.ReportMetric(mbps(n, cold), "cold-MB/s")
	b.ReportMetric(cpuPerGiB(curlCPU, n), "curl-cpu-s/GiB")
	b.ReportMetric(cpuPerGiB(mountCPU, n), "mount-cpu-s/GiB")
	b.ReportMetric(mountCPU.Seconds()/curlCPU.Seconds(), "mount/curl-cpu")
	b.ReportMetric(curl.Seconds()/cold.Seconds(), "cold/curl")
	b.ReportMetric(cpuPerGiB(ddCPU, n), "dd-cpu-s/GiB")
	b.ReportMetric(cpuPerGiB(simCurl, n), "sim-curl-cpu-s/GiB")
	b.ReportMetric(cpuPerGiB(simCold, n), "sim-cold-cpu-s/GiB")
	b.ReportMetric((mountCPU+ddCPU+simCold).Seconds()/(curlCPU+simCurl).Seconds(), "path/curl-cpu")
}

// BenchmarkGuestWrite compares, in one run, cp of a file into a guest
// through the mount (cp returns when close has committed: the file is
// staged whole, then InitiateFileTransferToGuest and one PUT, since the
// size must be given up front) with `govc guest.upload` of the same bytes,
// and notes the mount's resident memory.
func BenchmarkGuestWrite(b *testing.B) {
	size := benchSize()
	s := sim.StartT(b)
	src := shmFile(b, "guestwrite", size)
	m := mount(b, s, "--guest-login", sim.GuestLoginString(), "--cache-size", "512MiB")
	var cps, gups []time.Duration // medians compared, as in BenchmarkLibraryWrite
	for i := 0; i < b.N; i++ {
		cps = append(cps, timeCmd(b, "cp", src, m.Path("vms", guestVM, "tmp", fmt.Sprintf("cp-%d.bin", i))))
		cmd := exec.Command(govc, "guest.upload", src, fmt.Sprintf("/tmp/govc-%d.bin", i))
		cmd.Env = append(os.Environ(), "GOVC_URL="+s.URL.String(), "GOVC_INSECURE=1", "GOVC_VM="+guestVM, "GOVC_GUEST_LOGIN="+sim.GuestLoginString())
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("govc guest.upload: %v\n%s", err, out)
		}
		gups = append(gups, time.Since(start))
	}
	timeCmd(b, "cmp", src, filepath.Join(guestHostDir(b, s, guestVM), "tmp", "cp-0.bin"))
	cp, gup := median(cps), median(gups)
	b.Logf("runs: cp %v, govc %v", cps, gups)
	n := size
	b.ReportMetric(mbps(n, cp), "cp-MB/s")
	b.ReportMetric(mbps(n, gup), "govc-MB/s")
	b.ReportMetric(cp.Seconds()/gup.Seconds(), "cp-time/govc")
	b.ReportMetric(float64(rssKiB(b, m))/1024, "rss-MiB")
}

// BenchmarkGuestLs: `ls -l` of a guest directory of 1000 files through a
// fresh mount, against `govc guest.ls` of the same directory: time, and the
// guest API calls the mount made.
func BenchmarkGuestLs(b *testing.B) {
	s := sim.StartT(b)
	dir := filepath.Join(guestHostDir(b, s, guestVM), "tmp", "many")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%04d.txt", i)), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	var ls, gls time.Duration
	var calls int
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(govc, "guest.ls", "/tmp/many")
		cmd.Env = append(os.Environ(), "GOVC_URL="+s.URL.String(), "GOVC_INSECURE=1", "GOVC_VM="+guestVM, "GOVC_GUEST_LOGIN="+sim.GuestLoginString())
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("govc guest.ls: %v\n%s", err, out)
		}
		gls += time.Since(start)
		m := mount(b, s, "--guest-login", sim.GuestLoginString())
		before := s.Guest.Stats()
		ls += timeCmd(b, "ls", "-l", m.Path("vms", guestVM, "tmp", "many"))
		after := s.Guest.Stats()
		for k, v := range after.Calls {
			calls += v - before.Calls[k]
		}
		m.Unmount(b)
	}
	b.ReportMetric(float64(ls.Microseconds())/1e3/float64(b.N), "ls-ms")
	b.ReportMetric(float64(gls.Microseconds())/1e3/float64(b.N), "govc-ms")
	b.ReportMetric(gls.Seconds()/ls.Seconds(), "govc/ls")
	b.ReportMetric(float64(calls)/float64(b.N), "api-calls")
}
