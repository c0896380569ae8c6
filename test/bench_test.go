package test

import (
	"context"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/vapi/library"

	"github.com/vspherefs/vspherefs/test/sim"
)

// benchSize is the file the read benchmarks move (BENCH_MIB overrides).
func benchSize() int64 {
	if v, err := strconv.Atoi(os.Getenv("BENCH_MIB")); err == nil && v > 0 {
		return int64(v) << 20
	}
	return 256 << 20
}

// timeCmd runs a command and returns how long it took.
func timeCmd(b testing.TB, name string, args ...string) time.Duration {
	start := time.Now()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
	return time.Since(start)
}

// settle removes the copies named and writes back what the last timed
// command left dirty, so that each timed command starts from a disk with
// nothing to flush: otherwise a copy pays for the one before it (the
// kernel throttles writers while earlier pages are written back).
func settle(b testing.TB, remove ...string) {
	for _, p := range remove {
		if err := os.RemoveAll(p); err != nil {
			b.Fatal(err)
		}
	}
	syscall.Sync()
}

func mbps(size int64, d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }

// median is the middle of the durations (the mean of the two middle ones
// for an even count).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// timeCPU runs a command and returns how long it took and the CPU time
// (user + system) it used, from its rusage.
func timeCPU(b testing.TB, name string, args ...string) (time.Duration, time.Duration) {
	cmd := exec.Command(name, args...)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
	return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// cpuTime is the CPU time (user + system) a mount's process has used so
// far, from /proc/<pid>/stat (fields 14 and 15, in USER_HZ ticks, which
// Linux fixes at 100 a second for /proc), and its minor page faults (field 10).
func cpuTime(b testing.TB, m *Mount) (time.Duration, int64) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
	minflt, err0 := strconv.ParseInt(f[7], 10, 64)
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err0 != nil || err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", m.cmd.Process.Pid, st)
	}
	return time.Duration(utime+stime) * (time.Second / 100), minflt
}

// syscalls is the count of read and write system calls (readv and
// writev included) a mount's process has made so far, from /proc/<pid>/io.
func syscalls(b testing.TB, m *Mount) (reads, writes int64) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", m.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}

// selfCPU is the CPU time this process (the simulator serving the
// benchmark, as the harness waits meanwhile) has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerGiB is CPU seconds per GiB moved.
func cpuPerGiB(cpu time.Duration, size int64) float64 {
	return cpu.Seconds() / (float64(size) / (1 << 30))
}

// BenchmarkLibraryRead compares, in one run, a cold sequential read through
// the mount with curl GET of the same download endpoint, and a warm re-read
// with a read of the same bytes from tmpfs (/dev/shm). It also reports the
// CPU seconds per GiB of the mount process during the cold read next to
// curl's (a figure that holds on a loaded machine, where rates do not);
// BENCH_CPUPROFILE=DIR writes each mount's CPU profile to DIR/<mode>.pprof.
func BenchmarkLibraryRead(b *testing.B) {
	for _, ranges := range []bool{false, true} {
		b.Run(map[bool]string{false: "stream", true: "ranged"}[ranges], func(b *testing.B) {
			size := benchSize()
			s := sim.StartT(b)
			capSim(b, s) // BENCH_TC: the 1 Gb/s mode
			s.Library.SetRanges(ranges)
			c := context.Background()
			lib, _ := s.CreateLibrary(c, "bench")
			item, _ := s.CreateItem(c, lib, "file")
			if err := s.UploadFile(c, item, "data.bin", sim.DemoBytes("bench", size), size); err != nil {
				b.Fatal(err)
			}
			if dir := os.Getenv("BENCH_CPUPROFILE"); dir != "" {
				b.Setenv("VSPHEREFS_CPUPROFILE", filepath.Join(dir, map[bool]string{false: "stream", true: "ranged"}[ranges]+".pprof"))
			}
			// BENCH_MOUNT_GOGC sets GOGC for the mount process only (read
			// at its start; this process keeps its own).
			if v := os.Getenv("BENCH_MOUNT_GOGC"); v != "" {
				b.Setenv("GOGC", v)
			}
			// BENCH_MOUNT_GOMAXPROCS, likewise for GOMAXPROCS.
			if v := os.Getenv("BENCH_MOUNT_GOMAXPROCS"); v != "" {
				b.Setenv("GOMAXPROCS", v)
			}
			m := mount(b, s, benchMountArgs("--cache-size", "512MiB")...)
			p := m.Path("libraries", "bench", "file", "data.bin")
			shm := filepath.Join("/dev/shm", fmt.Sprintf("vspherefs-bench-%d", os.Getpid()))
			defer os.Remove(shm)
			var curl, cold, warm, tmpfs, curlCPU, mountCPU, ddCPU time.Duration
			var simCurl, simCold time.Duration // the simulator's CPU during each
			var faults int64                   // the mount's minor page faults in cold reads
			var reads, writes int64            // and its read and write system calls
			for i := 0; i < b.N; i++ {
				u, h, done, err := s.Endpoint(c, "bench", "file", "data.bin")
				if err != nil {
					b.Fatal(err)
				}
				sim0 := selfCPU()
				wall, cpu := timeCPU(b, "curl", "-sf", "--cacert", mustCert(b, s), "-H", "vmware-api-session-id: "+h.Get("vmware-api-session-id"), "-o", "/dev/null", u)
				simCurl += selfCPU() - sim0
				curl, curlCPU = curl+wall, curlCPU+cpu
				done()
				cpu0, flt0 := cpuTime(b, m)
				rd0, wr0 := syscalls(b, m)
				sim0 = selfCPU()
				wall, cpu = timeCPU(b, "dd", "if="+p, "of=/dev/null", "bs=1M")
				simCold += selfCPU() - sim0
				rd1, wr1 := syscalls(b, m)
				reads, writes = reads+rd1-rd0, writes+wr1-wr0
				cpu1, flt1 := cpuTime(b, m)
				mountCPU, faults = mountCPU+cpu1-cpu0, faults+flt1-flt0
				cold, ddCPU = cold+wall, ddCPU+cpu
				warm += timeCmd(b, "dd", "if="+p, "of=/dev/null", "bs=1M")
				timeCmd(b, "cp", p, shm)
				tmpfs += timeCmd(b, "dd", "if="+shm, "of=/dev/null", "bs=1M")
				if i+1 < b.N { // the next cold read must start cold: a fresh mount
					m.Unmount(b)
					m = mount(b, s, benchMountArgs("--cache-size", "512MiB")...)
					p = m.Path("libraries", "bench", "file", "data.bin")
				}
			}
			n := int64(b.N) * size
			b.ReportMetric(mbps(n, curl), "curl-MB/s")
			b.ReportMetric(mbps(n, cold), "cold-MB/s")
			b.ReportMetric(mbps(n, warm), "warm-MB/s")
			b.ReportMetric(mbps(n, tmpfs), "tmpfs-MB/s")
			b.ReportMetric(curl.Seconds()/cold.Seconds(), "cold/curl")
			b.ReportMetric(tmpfs.Seconds()/warm.Seconds(), "warm/tmpfs")
			b.ReportMetric(cpuPerGiB(curlCPU, n), "curl-cpu-s/GiB")
			b.ReportMetric(cpuPerGiB(mountCPU, n), "mount-cpu-s/GiB")
			b.ReportMetric(cpuPerGiB(ddCPU, n), "dd-cpu-s/GiB")
			b.ReportMetric(mountCPU.Seconds()/curlCPU.Seconds(), "mount/curl-cpu")
			// On two cores both paths are CPU-bound: the rates' ratio
			// follows that of all the CPU each path takes, the simulator's
			// (its TLS and file reads) included.
			b.ReportMetric(cpuPerGiB(simCurl, n), "sim-curl-cpu-s/GiB")
			b.ReportMetric(cpuPerGiB(simCold, n), "sim-cold-cpu-s/GiB")
			b.ReportMetric((mountCPU+ddCPU+simCold).Seconds()/(curlCPU+simCurl).Seconds(), "path/curl-cpu")
			b.ReportMetric(float64(faults)/float64(n>>20), "mount-faults/MiB")
			b.ReportMetric(float64(reads)/float64(n>>20), "mount-reads/MiB")
			b.ReportMetric(float64(writes)/float64(n>>20), "mount-writes/MiB")
			b.ReportMetric(float64(rssKiB(b, m))/1024, "rss-MiB")
		})
	}
}

func mustCert(b testing.TB, s *sim.Server) string {
	f, err := s.CertificateFile()
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// rssKiB is the mount process's peak resident memory.
func rssKiB(b testing.TB, m *Mount) int64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}

// BenchmarkLibraryWrite compares, in one run, cp of a file into the mount
// (the whole update session included: cp returns when close has
// committed), streamed (the default) and with --upload=staged (staged whole,
// checksum first), with curl -T of the same bytes to a fresh upload endpoint
// (the PUT alone) and with govc library.import; then a round trip of 4x the
// size (1 GiB by default): a streamed cp in, sampling the local disk the
// mount's cache dir holds and its resident memory meanwhile, and cp out of a
// fresh mount, compared.
func BenchmarkLibraryWrite(b *testing.B) {
	size := benchSize()
	s := sim.StartT(b)
	c := context.Background()
	lib, _ := s.CreateLibrary(c, "bench")
	for _, n := range []string{"cp", "staged", "curl", "govc"} {
		if _, err := s.CreateItem(c, lib, n); err != nil {
			b.Fatal(err)
		}
	}
	src := shmFile(b, "write", size)
	m := mount(b, s, "--cache-size", "512MiB")
	ms := mount(b, s, "--cache-size", "512MiB", "--upload", "staged")
	_, rc, err := s.Client(c)
	if err != nil {
		b.Fatal(err)
	}
	lm := library.NewManager(rc)
	curlItem, err := lm.FindLibraryItems(c, library.FindItem{LibraryID: lib, Name: "curl"})
	if err != nil || len(curlItem) != 1 {
		b.Fatal(err)
	}
	// Each run is timed on its own and the medians compared: on this shared
	// two-core machine one run of either side can be slowed by the other's
	// page-cache writeback (the simulator writes every upload to disk).
	var cps, stageds, curls, govcs []time.Duration
	for i := 0; i < b.N; i++ {
		// curl -T to a fresh upload endpoint (a new session each time).
		sid, err := lm.CreateLibraryItemUpdateSession(c, library.Session{LibraryItemID: curlItem[0]})
		if err != nil {
			b.Fatal(err)
		}
		info, err := lm.AddLibraryItemFile(c, sid, library.UpdateFile{Name: "data.bin", SourceType: "PUSH", Size: size})
		if err != nil {
			b.Fatal(err)
		}
		curls = append(curls, timeCmd(b, "curl", "-sf", "--cacert", mustCert(b, s), "-H", "vmware-api-session-id: "+rc.SessionID(), "-T", src, info.UploadEndpoint.URI))
		if err := lm.CompleteLibraryItemUpdateSession(c, sid); err != nil {
			b.Fatal(err)
		}
		cps = append(cps, timeCmd(b, "cp", src, m.Path("libraries", "bench", "cp", "data.bin")))
		stageds = append(stageds, timeCmd(b, "cp", src, ms.Path("libraries", "bench", "staged", "data.bin")))
		cmd := exec.Command(govc, "library.import", "bench/govc", src)
		cmd.Env = append(os.Environ(), "GOVC_URL="+s.URL.String(), "GOVC_INSECURE=1")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("govc library.import: %v\n%s", err, out)
		}
		govcs = append(govcs, time.Since(start))
	}
	ms.Unmount(b)
	cp, staged, curl, govcT := median(cps), median(stageds), median(curls), median(govcs)
	b.Logf("runs: cp %v, staged %v, curl %v, govc %v", cps, stageds, curls, govcs)
	n := size
	b.ReportMetric(mbps(n, curl), "curl-MB/s")
	b.ReportMetric(mbps(n, cp), "cp-MB/s")
	b.ReportMetric(mbps(n, staged), "staged-MB/s")
	b.ReportMetric(mbps(n, govcT), "govc-MB/s")
	b.ReportMetric(cp.Seconds()/govcT.Seconds(), "cp-time/govc")
	b.ReportMetric(staged.Seconds()/govcT.Seconds(), "staged-time/govc")
	b.ReportMetric(cp.Seconds()/curl.Seconds(), "cp-time/curl")
	b.ReportMetric(float64(rssKiB(b, m))/1024, "rss-MiB")

	// Round trip of 4x the size, streamed in: the local disk it takes.
	big := 4 * size
	os.Remove(src)
	src = shmFile(b, "roundtrip", big)
	stop := make(chan struct{})
	peak := make(chan int64)
	go func() {
		var max int64
		for {
			if d := diskUsed(m.CacheDir); d > max {
				max = d
			}
			select {
			case <-stop:
				peak <- max
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	in := timeCmd(b, "cp", src, m.Path("libraries", "bench", "cp", "round.bin"))
	close(stop)
	disk := <-peak
	rssIn := rssKiB(b, m)
	m.Unmount(b)
	m = mount(b, s, "--cache-size", "512MiB")
	back := src + ".back"
	defer os.Remove(back)
	out := timeCmd(b, "cp", m.Path("libraries", "bench", "cp", "round.bin"), back)
	timeCmd(b, "cmp", src, back)
	b.Logf("round trip of %d MiB: in %v (cache dir peak %d MiB on disk, RSS peak %d MiB), out %v", big>>20, in, disk>>20, rssIn>>10, out)
	b.ReportMetric(mbps(big, in), "1GiB-in-MB/s")
	b.ReportMetric(float64(disk)/(1<<20), "1GiB-in-disk-peak-MiB")
	b.ReportMetric(float64(rssIn)/1024, "1GiB-in-rss-MiB")
	b.ReportMetric(mbps(big, out), "1GiB-out-MB/s")
	b.ReportMetric(float64(rssKiB(b, m))/1024, "rss-out-MiB")
}

// diskUsed is the disk the files under dir take (their blocks, so punched
// holes do not count).
func diskUsed(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			var st syscall.Stat_t
			if syscall.Stat(p, &st) == nil {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// shmFile writes size deterministic bytes to tmpfs, removed at cleanup.
func shmFile(b testing.TB, name string, size int64) string {
	p := filepath.Join("/dev/shm", fmt.Sprintf("vspherefs-bench-%s-%d", name, os.Getpid()))
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, sim.DemoBytes(name, size)); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.Cleanup(func() { os.Remove(p) })
	return p
}

// BenchmarkLibraryList compares `ls -l` of a 1000-item library through a
// fresh mount with `govc library.ls` of the same items, in one run, and
// counts the API calls the mount made.
func BenchmarkLibraryList(b *testing.B) {
	const items = 1000
	s := sim.StartT(b)
	c := context.Background()
	lib, err := s.CreateLibrary(c, "many")
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < items; i++ {
		if _, err := s.CreateItem(c, lib, fmt.Sprintf("item-%04d", i)); err != nil {
			b.Fatal(err)
		}
	}
	env := append(os.Environ(), "GOVC_URL="+s.URL.String(), "GOVC_INSECURE=1", "GOVC_PERSIST_SESSION=false")
	var ls, ls2, gl time.Duration
	var calls int
	for i := 0; i < b.N; i++ {
		m := mount(b, s, "--debug", "--ttl", "1m")
		before := strings.Count(m.Log(), "msg=api")
		ls += timeCmd(b, "ls", "-l", m.Path("libraries", "many"))
		calls += strings.Count(m.Log(), "msg=api") - before
		ls2 += timeCmd(b, "ls", "-l", m.Path("libraries", "many"))
		m.Unmount(b)
		cmd := exec.Command(govc, "library.ls", "many/*")
		cmd.Env = env
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil || strings.Count(string(out), "\n") != items {
			b.Fatalf("govc library.ls: %v (%d lines)", err, strings.Count(string(out), "\n"))
		}
		gl += time.Since(start)
	}
	b.ReportMetric(ls.Seconds()/float64(b.N), "ls-cold-s")
	b.ReportMetric(ls2.Seconds()/float64(b.N), "ls-warm-s")
	b.ReportMetric(gl.Seconds()/float64(b.N), "govc-s")
	b.ReportMetric(ls.Seconds()/gl.Seconds(), "ls/govc")
	b.ReportMetric(float64(calls)/float64(b.N), "api-calls")
}

// BenchmarkExport compares, in one run, `cp -r exports/<vm>` through a
// fresh mount (the export itself: one lease, the disks spooled, then the
// copy from the spool) with `govc export.ovf` of the same VM, and a second
// `cp -r` (from the spool), and a cold `cp -r` with --max-transfers 1 (disks
// one at a time, as govc). BENCH_DISKS sets the VM's disk count (default 8,
// the case issue 12 sets its target for; each disk streams about 8 MiB,
// from 24 MiB of data).
func BenchmarkExport(b *testing.B) {
	disks := 8
	if v, err := strconv.Atoi(os.Getenv("BENCH_DISKS")); err == nil && v > 0 {
		disks = v
	}
	s := sim.StartT(b)
	capSim(b, s) // BENCH_TC: the 1 Gb/s mode
	vm := simVM(b, s, exportVM, true)
	for i := 1; i < disks; i++ {
		addSmallDisk(b, vm, fmt.Sprintf("bench%d", i), 64<<20)
	}
	// The simulator generates each disk's stream once: do that before timing.
	govcRun(b, s, "export.ovf", "-vm", exportVM, "-sha", "256", b.TempDir())
	// BENCH_NFC_MBPS caps each disk transfer (not their sum) at that many
	// MB/s, as an ESXi host paces each NFC stream.
	if v, err := strconv.Atoi(os.Getenv("BENCH_NFC_MBPS")); err == nil && v > 0 {
		s.Exports.Throttle(int64(v) * 1e6)
	}
	var govcT, cold, seq, warm, export, copyT time.Duration
	var size int64
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		cmd := exec.Command(govc, "export.ovf", "-vm", exportVM, "-sha", "256", filepath.Join(dir, "govc"))
		cmd.Env = append(os.Environ(), "GOVC_URL="+s.URL.String(), "GOVC_INSECURE=1")
		settle(b)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("govc export.ovf: %v\n%s", err, out)
		}
		govcT += time.Since(start)
		m := mount(b, s)
		settle(b)
		cold += timeCmd(b, "cp", "-r", m.Path("exports", exportVM), filepath.Join(dir, "cold"))
		size = 0
		for _, f := range packageFilesTB(b, filepath.Join(dir, "cold")) {
			size += int64(len(f))
		}
		settle(b, filepath.Join(dir, "govc"), filepath.Join(dir, "cold"))
		warm += timeCmd(b, "cp", "-r", m.Path("exports", exportVM), filepath.Join(dir, "warm"))
		m.Unmount(b)
		// The same cold copy with one disk at a time, as govc fetches them.
		m = mount(b, s, "--max-transfers", "1")
		settle(b, filepath.Join(dir, "warm"))
		seq += timeCmd(b, "cp", "-r", m.Path("exports", exportVM), filepath.Join(dir, "seq"))
		m.Unmount(b)
		// Split: the export (ls -l waits for it), then the copy from the spool.
		m = mount(b, s)
		settle(b, filepath.Join(dir, "seq"))
		export += timeCmd(b, "ls", "-l", m.Path("exports", exportVM))
		copyT += timeCmd(b, "cp", "-r", m.Path("exports", exportVM), filepath.Join(dir, "split"))
		m.Unmount(b)
		settle(b, filepath.Join(dir, "split"))
	}
	n := int64(b.N) * size
	b.ReportMetric(float64(size)/(1<<20), "package-MiB")
	b.ReportMetric(govcT.Seconds()/float64(b.N), "govc-s")
	b.ReportMetric(cold.Seconds()/float64(b.N), "cp-cold-s")
	b.ReportMetric(warm.Seconds()/float64(b.N), "cp-warm-s")
	b.ReportMetric(cold.Seconds()/govcT.Seconds(), "cold/govc")
	b.ReportMetric(seq.Seconds()/float64(b.N), "cp-cold-max1-s")
	b.ReportMetric(seq.Seconds()/govcT.Seconds(), "cold-max1/govc")
	b.ReportMetric(export.Seconds()/float64(b.N), "ls-l-export-s")
	b.ReportMetric(copyT.Seconds()/float64(b.N), "cp-after-ls-s")
	b.ReportMetric(export.Seconds()/govcT.Seconds(), "export/govc")
	b.ReportMetric(mbps(n, govcT), "govc-MB/s")
	b.ReportMetric(mbps(n, cold), "cold-MB/s")
	b.ReportMetric(mbps(n, warm), "warm-MB/s")
}

// benchMountArgs adds BENCH_MOUNT_ARGS (flags split on spaces, e.g.
// "--direct-read-size 512MiB") to a read benchmark's mount flags, to compare
// settings in one run.
func benchMountArgs(args ...string) []string {
	return append(args, strings.Fields(os.Getenv("BENCH_MOUNT_ARGS"))...)
}
