package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/fs"
	"github.com/vspherefs/vspherefs/metrics"
	"github.com/vspherefs/vspherefs/test/sim"
)

type mountFlags struct {
	url, username, password, passwordFile string
	insecure                              bool
	caCerts, thumbprint                   string
	sim                                   bool
	guestLogin, guestLoginFile            string
	cacheSize, cacheDir, spoolSize        string
	ttl, timeout                          time.Duration
	readOnly, allowOther, debug           bool
	libraryDatastore                      string
}

func envBool(name string) bool {
	b, _ := strconv.ParseBool(os.Getenv(name))
	return b
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "vspherefs")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("vspherefs-%d", os.Getuid()))
}

func runMount(args []string) error {
	var f mountFlags
	fl := flag.NewFlagSet("mount", flag.ExitOnError)
	fl.StringVar(&f.url, "url", os.Getenv("GOVC_URL"), "vCenter URL; user:password@ may be embedded, as in govc [$GOVC_URL]")
	fl.StringVar(&f.username, "username", os.Getenv("GOVC_USERNAME"), "vCenter user [$GOVC_USERNAME]")
	fl.StringVar(&f.password, "password", "", "vCenter password (visible to every user in argv: prefer --password-file or $GOVC_PASSWORD)")
	fl.StringVar(&f.passwordFile, "password-file", "", "file holding the vCenter password")
	fl.BoolVar(&f.insecure, "insecure", envBool("GOVC_INSECURE"), "skip TLS certificate verification [$GOVC_INSECURE]")
	fl.StringVar(&f.caCerts, "ca-certs", os.Getenv("GOVC_TLS_CA_CERTS"), "PEM file of CA certificates to trust [$GOVC_TLS_CA_CERTS]")
	fl.StringVar(&f.thumbprint, "thumbprint", "", "pin the server certificate by its SHA-1 thumbprint")
	fl.BoolVar(&f.sim, "sim", false, "start the embedded simulator with demo content and mount it")
	fl.StringVar(&f.guestLogin, "guest-login", os.Getenv("GOVC_GUEST_LOGIN"), "guest OS login for vms/, USER:PASS [$GOVC_GUEST_LOGIN]")
	fl.StringVar(&f.guestLoginFile, "guest-login-file", "", "file mapping VM name patterns to guest logins (PATTERN = USER:PASS a line)")
	fl.StringVar(&f.cacheSize, "cache-size", "512MiB", "memory for the block cache")
	fl.StringVar(&f.spoolSize, "spool-size", "", "disk the spools of files no longer read may keep in --cache-dir (default: 4x --cache-size, at least 2GiB)")
	fl.StringVar(&f.cacheDir, "cache-dir", defaultCacheDir(), "disk for staging, spool and recovery")
	fl.DurationVar(&f.ttl, "ttl", time.Second, "attribute and entry cache lifetime")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "deadline of each API call, and how long a transfer may stall")
	fl.BoolVar(&f.readOnly, "read-only", false, "refuse every write with EROFS")
	fl.StringVar(&f.libraryDatastore, "library-datastore", "", "datastore of libraries made by mkdir (default: the first that fits)")
	fl.BoolVar(&f.allowOther, "allow-other", false, "let other users see the mount")
	fl.BoolVar(&f.debug, "debug", false, "log every API call (never secrets)")
	addOpsFlags(fl) // running as a service: logging.go
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: vspherefs mount [flags] MOUNTPOINT\n")
		fl.PrintDefaults()
	}
	_ = fl.Parse(args)
	if fl.NArg() != 1 {
		fl.Usage()
		os.Exit(2)
	}
	mountpoint := fl.Arg(0)

	log := newLogger(f.debug) // --log-file, --log-format, --log-level
	slog.SetDefault(log)
	uid, gid, umask, err := ops.owner()
	if err != nil {
		return err
	}

	cfg := backend.Config{Insecure: f.insecure, CACerts: f.caCerts, Thumbprint: f.thumbprint, Timeout: f.timeout, Log: log, Debug: f.debug}
	obs := metrics.New(log, f.debug) // status, metrics, progress: service.go
	cfg.Observer = obs
	if f.sim {
		s, err := sim.Start(sim.Options{Demo: true})
		if err != nil {
			return fmt.Errorf("simulator: %w", err)
		}
		if f.guestLogin == "" {
			f.guestLogin = sim.GuestLoginString() // what the simulated guests accept
		}
		defer s.Close()
		fmt.Println(s.GovcURL())
		fmt.Printf("GOVC_INSECURE=1   # or pin: --thumbprint %s\n", s.Thumbprint)
		f.url = s.URL.String()
		if cfg.Thumbprint == "" && !cfg.Insecure && cfg.CACerts == "" {
			// Verify the simulator's certificate as a CA-signed one would be.
			if cfg.CACerts, err = s.CertificateFile(); err != nil {
				return err
			}
		}
	}
	u, user, err := credentials(f)
	if err != nil {
		return err
	}
	cfg.URL, cfg.User = u, user
	if !flagGiven(fl, "cache-dir") { // each vCenter and user its own
		f.cacheDir = perServerCacheDir(f.cacheDir, u, user)
	}

	cacheBytes, err := parseSize(f.cacheSize)
	if err != nil {
		return fmt.Errorf("--cache-size: %w", err)
	}
	// The block cache is most of the heap and turns over all the time: keep
	// the process near its budget instead of letting the GC double it.
	debug.SetMemoryLimit(cacheBytes + 192<<20)
	var spoolBytes int64
	if f.spoolSize != "" {
		if spoolBytes, err = parseSize(f.spoolSize); err != nil {
			return fmt.Errorf("--spool-size: %w", err)
		}
	}
	if err := os.MkdirAll(f.cacheDir, 0o700); err != nil {
		return fmt.Errorf("--cache-dir: %w", err)
	}
	// Spools are caches: those of mounts that died are removed. Files open
	// for writing are staged per mount (a dead mount's staged files are moved
	// to recovery/ by the next writable mount); failed commits keep their
	// bytes in recovery/ for the user.
	removeStale(f.cacheDir, "spool-")
	spool, err := lockedTempDir(f.cacheDir, "spool-")
	if err != nil {
		return fmt.Errorf("--cache-dir: %w", err)
	}
	defer os.RemoveAll(spool)
	staging, err := lockedTempDir(filepath.Join(f.cacheDir, "staging"), "mount-")
	if err != nil {
		return fmt.Errorf("--cache-dir: %w", err)
	}
	defer os.RemoveAll(staging)

	ctx := context.Background()
	conn, err := backend.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	blocks, err := cache.New(cache.Options{Bytes: cacheBytes, Dir: spool, SpoolBytes: spoolBytes})
	if err != nil {
		return err
	}
	defer blocks.Close()
	// Download sessions unused for a minute are deleted (a test knob shortens it).
	idle, _ := time.ParseDuration(os.Getenv("VSPHEREFS_DOWNLOAD_IDLE"))
	if idle <= 0 {
		idle = time.Minute
	}
	downloads := backend.NewDownloads(conn, idle)
	defer downloads.Close()

	// Export spools live under --cache-dir while mounted; Close aborts any
	// export still running (no lease outlives the mount) and removes them.
	exports, err := backend.NewExports(conn, filepath.Join(spool, "exports"), f.ttl)
	if err != nil {
		return fmt.Errorf("--cache-dir: %w", err)
	}
	defer exports.Close()

	logins, err := backend.NewGuestLogins(f.guestLogin, f.guestLoginFile)
	if err != nil {
		return fmt.Errorf("--guest-login: %w", err)
	}
	var writes *fs.Writes
	if !f.readOnly {
		lw := backend.NewLibraryWriter(conn)
		// Update sessions a killed mount with this cache dir left open are
		// ended now; this mount's own are recorded there while open.
		if err := lw.TrackSessions(ctx, filepath.Join(f.cacheDir, "sessions")); err != nil {
			return fmt.Errorf("--cache-dir: %w", err)
		}
		defer lw.Close()
		if writes, err = fs.NewWrites(lw, f.cacheDir); err != nil {
			return fmt.Errorf("--cache-dir: %w", err)
		}
		writes.PickDatastore = func(ctx context.Context) (string, error) {
			return backend.PickDatastore(ctx, conn, f.libraryDatastore, 0)
		}
	}
	// Test knobs: how soon the guest inode table is swept.
	inoSweep, _ := strconv.Atoi(os.Getenv("VSPHEREFS_INO_SWEEP"))
	inoGrace, _ := time.ParseDuration(os.Getenv("VSPHEREFS_INO_GRACE"))
	server, err := fs.Mount(mountpoint, fs.Options{
		Catalog:   backend.NewCatalog(conn, f.ttl),
		Downloads: downloads,
		Guests:    backend.NewGuests(conn, logins, f.ttl),
		Cache:     blocks,
		TTL:       f.ttl,
		ReadOnly:  f.readOnly,
		Writes:    writes,
		Log:       log,

		StagingDir:  staging,
		RecoveryDir: filepath.Join(f.cacheDir, "recovery"),

		Exports: exports,

		InoSweep: inoSweep,
		InoGrace: inoGrace,

		UID: uid, GID: gid, Umask: umask, FsName: cfg.URL.Host, StatusSocket: statusSocket(spool),
	}, f.allowOther, false)
	if err != nil {
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	log.Info("mounted", "mountpoint", mountpoint, "server", cfg.URL.Host, "pid", os.Getpid())
	stopService, err := startService(server, service{mountpoint: mountpoint, host: cfg.URL.Host, // service.go
		cacheDir: f.cacheDir, spool: spool, obs: obs, cache: blocks, writes: writes})
	if err != nil {
		return err
	}
	defer stopService()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	select {
	case s := <-sig:
		log.Info("unmounting", "signal", s.String())
		exports.Close() // abort exports first: a stat waiting for one would keep the mount busy
		if err := unmount(server, done, writes.Busy); err != nil {
			return err
		}
	case <-done: // umount MOUNTPOINT
	}
	log.Info("unmounted", "mountpoint", mountpoint)
	if writes != nil {
		if lost := writes.Close(ctx); len(lost) > 0 {
			for _, p := range lost {
				log.Error("not committed; bytes kept", "recovery", p)
			}
			return fmt.Errorf("%d file(s) could not be committed at unmount; their bytes are in %s", len(lost), filepath.Join(f.cacheDir, "recovery"))
		}
	}
	return nil
}

// unmount retries while the mount is busy, as umount does not force it, and
// for as long as a commit is running (a close waiting for it keeps the
// mount busy).
func unmount(server interface{ Unmount() error }, done <-chan struct{}, committing func() bool) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = server.Unmount(); err == nil {
			<-done
			return nil
		}
		if committing() {
			i = 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("unmount: %w", err)
}

// credentials resolves the URL and login from flags, the URL and the environment.
func credentials(f mountFlags) (*url.URL, *url.Userinfo, error) {
	if f.url == "" {
		return nil, nil, errors.New("no vCenter: give --url, set $GOVC_URL, or use --sim")
	}
	raw := f.url
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, errors.New("--url: not a URL") // the text may hold a password: do not echo it
	}
	user, pass := "", ""
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	if f.username != "" {
		user = f.username
	}
	if env := os.Getenv("GOVC_PASSWORD"); env != "" {
		pass = env
	}
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--password-file: %w", err)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	if f.password != "" {
		pass = f.password
	}
	if user == "" {
		return nil, nil, errors.New("no vCenter user: give --username, $GOVC_USERNAME or user@ in the URL")
	}
	u.User = nil
	if u.Path == "" {
		u.Path = "/sdk"
	}
	return u, url.UserPassword(user, pass), nil
}
