package main

import (
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vspherefs/vspherefs/cache"
	vfs "github.com/vspherefs/vspherefs/fs"
	"github.com/vspherefs/vspherefs/metrics"
	"github.com/vspherefs/vspherefs/status"
)

// service is what a running mount shows of itself: the status socket, the
// metrics server, the progress log.
type service struct {
	mountpoint, host string
	cacheDir, spool  string // --cache-dir, and the mount's own locked folder in it
	obs              *metrics.Metrics
	cache            *cache.Cache
	writes           *vfs.Writes
	passthrough      *atomic.Int64 // files handed to the kernel as passthrough backing
	started          time.Time
}

// statusSocket is where the mount serves its status: in its own locked
// spool folder, which no other mount uses (so two mounts sharing a cache dir
// never answer for each other), which is removed at unmount, and which is
// 0700 under a cache dir only its user can enter.
func statusSocket(spool string) string { return filepath.Join(spool, status.SocketName) }

// startService is called once the FUSE mount is made: it serves the status
// socket and the metrics, waits until the filesystem answers through the
// kernel, then tells whoever waits for that (systemd through $NOTIFY_SOCKET,
// the --daemon parent through its pipe). If it never answers, the mount is
// undone and the error returned. The returned func stops what it started.
func startService(server fuseServer, s service) (func(), error) {
	s.started = time.Now()
	registerGauges(s)
	// How often long transfers log their progress (a test knob shortens it).
	s.obs.Progress, _ = time.ParseDuration(os.Getenv("VSPHEREFS_PROGRESS_EVERY"))
	serving := "serving " + s.host + " at " + s.mountpoint
	s.obs.OnProgress = func(ts []status.Transfer) {
		if os.Getenv("NOTIFY_SOCKET") == "" {
			return
		}
		line := serving
		if len(ts) > 0 {
			var done int64
			for _, t := range ts {
				done += t.Done
			}
			line += fmt.Sprintf("; %d transfer(s) in flight, %s moved", len(ts), size(done))
		}
		sdNotify("STATUS=" + line)
	}
	st, err := status.Serve(s.spool, s.snapshot)
	if err != nil {
		_ = server.Unmount()
		return nil, err
	}
	if err := s.obs.Start(ops.metrics); err != nil {
		st.Close()
		_ = server.Unmount()
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	stop := func() { s.obs.Close(); st.Close() }
	if err := waitAnswers(s.mountpoint, 30*time.Second); err != nil {
		stop()
		_ = server.Unmount()
		return nil, err
	}
	sdNotify("READY=1\nSTATUS=" + serving)
	daemonReady()
	// STOPPING=1 as soon as the way out starts (a signal, or umount), while
	// pending commits are still finishing.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	served := make(chan struct{})
	go func() { server.Wait(); close(served) }()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-sig:
		case <-served:
		}
		sdNotify("STOPPING=1\nSTATUS=unmounting " + s.mountpoint + ": finishing commits")
	}()
	return func() {
		signal.Stop(sig)
		select {
		case sig <- syscall.SIGTERM: // unblock the watcher if nothing did
		default:
		}
		<-watched
		stop()
	}, nil
}

// fuseServer is what startService needs of the go-fuse server.
type fuseServer interface {
	Unmount() error
	Wait()
}

func (s service) snapshot() status.Snapshot {
	calls, faults, sessions := s.obs.Counts()
	cs := s.cache.Stats()
	snap := status.Snapshot{
		PID: os.Getpid(), Mountpoint: s.mountpoint, Server: s.host, CacheDir: s.cacheDir,
		Started: s.started, Version: version,
		Transfers:  s.obs.Tracker.Snapshot(),
		Commits:    s.writes.Commits(),
		Held:       []status.HeldFile{},
		Recovery:   recoveryFiles(filepath.Join(s.cacheDir, "recovery")),
		Sessions:   sessions,
		CacheBytes: cs.Bytes, CacheLimitBytes: cs.LimitBytes, SpoolBytes: cs.SpoolBytes,
		Calls: calls, Faults: faults,
	}
	for _, h := range s.writes.Staged() {
		snap.Held = append(snap.Held, status.HeldFile{Path: h.Path, State: h.State})
	}
	return snap
}

// registerGauges adds the metrics read from the cache and the cache dir when scraped.
func registerGauges(s service) {
	o := s.obs
	o.CounterFunc("vspherefs_cache_hits_total", "Block cache lookups that found the block.", func() float64 { return float64(s.cache.Stats().Hits) })
	o.CounterFunc("vspherefs_cache_misses_total", "Block cache lookups that did not.", func() float64 { return float64(s.cache.Stats().Misses) })
	o.CounterFunc("vspherefs_cache_evictions_total", "Blocks evicted from the block cache.", func() float64 { return float64(s.cache.Stats().Evictions) })
	o.CounterFunc("vspherefs_passthrough_files_total", "Opens whose local file (a complete spool, an export package file) was handed to the kernel for FUSE passthrough.", func() float64 { return float64(s.passthrough.Load()) })
	o.GaugeFunc("vspherefs_cache_bytes", "Memory held by the block cache.", func() float64 { return float64(s.cache.Stats().Bytes) })
	o.GaugeFunc("vspherefs_cache_limit_bytes", "The block cache's size (--cache-size).", func() float64 { return float64(s.cache.Stats().LimitBytes) })
	o.GaugeFunc("vspherefs_spool_bytes", "Disk held by this mount's spools (streams and exports).", func() float64 { return float64(s.cache.Stats().SpoolBytes) })
	o.GaugeFunc("vspherefs_recovery_files", "Files in the cache dir's recovery/ folder (bytes of failed commits).", func() float64 {
		return float64(len(recoveryFiles(filepath.Join(s.cacheDir, "recovery"))))
	})
	o.GaugeFunc("vspherefs_commits_pending", "Library commits running or queued.", func() float64 { return float64(s.writes.Commits()) })
	o.GaugeFunc("vspherefs_staged_files", "Library files staged and not committed (open, queued or held).", func() float64 { return float64(len(s.writes.Staged())) })
}

// recoveryFiles lists the files under recovery/, relative to it.
func recoveryFiles(dir string) []string {
	out := []string{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if rel, err := filepath.Rel(dir, p); err == nil {
				out = append(out, rel)
			}
		}
		return nil
	})
	return out
}

// flagGiven says whether the command line set the flag.
func flagGiven(fl *flag.FlagSet, name string) bool {
	given := false
	fl.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// perServerCacheDir is the default cache dir's subfolder for one vCenter and
// user (host[:port]/user), so that mounts of two vCenters, or as two users,
// never mix their spools, staging and recovery files.
func perServerCacheDir(base string, u *url.URL, user *url.Userinfo) string {
	return filepath.Join(base, safeComponent(u.Host), safeComponent(user.Username()))
}

// safeComponent makes s one path component: / and NUL and a leading dot escaped.
func safeComponent(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '/' || r == 0 || r == '%' || (i == 0 && r == '.'):
			fmt.Fprintf(&b, "%%%02X", r)
		default:
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "%"
	}
	return b.String()
}
