package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/backend/guest"
	"github.com/vspherefs/vspherefs/backend/library"
	"github.com/vspherefs/vspherefs/backend/nfc"
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
	directReadSize                        string
	ttl, timeout                          time.Duration
	maxTransfers                          int
	readOnly, allowOther, debug           bool
	libraryDatastore                      string
	mountpoint                            string
	given                                 map[string]bool // flags given on the command line
	upload                                string          // stream or staged
	test                                  testKnobs
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

// usageError is a mistake in the command line: main exits 2 with its one line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...) + " (vspherefs mount -h lists the flags)"}
}

func runMount(args []string) error {
	f, err := parseMount(args) // parse: the flags and how they combine
	if err != nil || f == nil {
		return err
	}
	c, err := configure(f) // config: what can be checked here, before the login
	if c != nil {
		defer c.close()
	}
	if err != nil {
		return err
	}
	return serve(c) // mount: the login, the clients, the FUSE mount, until unmount
}

// parseMount parses the mount's command line; nil flags (and no error)
// after -h.
func parseMount(args []string) (*mountFlags, error) {
	var f mountFlags
	fl := flag.NewFlagSet("mount", flag.ContinueOnError)
	fl.StringVar(&f.url, "url", os.Getenv("GOVC_URL"), "vCenter URL; user:password@ may be embedded, as in govc [$GOVC_URL]")
	fl.StringVar(&f.username, "username", os.Getenv("GOVC_USERNAME"), "vCenter user [$GOVC_USERNAME]")
	fl.StringVar(&f.password, "password", "", "vCenter password [$GOVC_PASSWORD] (argv is visible to every user: prefer $GOVC_PASSWORD or --password-file)")
	fl.StringVar(&f.passwordFile, "password-file", "", "file holding the vCenter password")
	fl.BoolVar(&f.insecure, "insecure", envBool("GOVC_INSECURE"), "skip TLS certificate verification [$GOVC_INSECURE]")
	fl.StringVar(&f.caCerts, "ca-certs", os.Getenv("GOVC_TLS_CA_CERTS"), "PEM file of CA certificates to trust [$GOVC_TLS_CA_CERTS]")
	fl.StringVar(&f.thumbprint, "thumbprint", "", "pin the server certificate by its SHA-1 thumbprint")
	fl.BoolVar(&f.sim, "sim", false, "start the embedded simulator with demo content and mount it")
	fl.StringVar(&f.guestLogin, "guest-login", os.Getenv("GOVC_GUEST_LOGIN"), "guest OS login for vms/, USER:PASS [$GOVC_GUEST_LOGIN]")
	fl.StringVar(&f.guestLoginFile, "guest-login-file", "", "file mapping VM name patterns to guest logins (PATTERN = USER:PASS a line)")
	fl.StringVar(&f.cacheSize, "cache-size", "512MiB", "memory for the block cache")
	fl.StringVar(&f.spoolSize, "spool-size", "", "disk the spools of files no longer read may keep in --cache-dir (default: 4x --cache-size, at least 2GiB)")
	fl.StringVar(&f.directReadSize, "direct-read-size", "", "a cold read of a library or guest file this large or larger bypasses the kernel's page cache, for readers with large buffers (dd bs=1M, cp); its spool serves re-reads (default 0: never)")
	fl.StringVar(&f.cacheDir, "cache-dir", defaultCacheDir(), "disk for staging, spool and recovery; yours alone (refused if others can write it)")
	fl.DurationVar(&f.ttl, "ttl", time.Second, "attribute and entry cache lifetime")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "deadline of each API call, how long a transfer may stall, and how long unmounting waits for commits")
	fl.IntVar(&f.maxTransfers, "max-transfers", nfc.DefaultMaxTransfers, "disk transfers at once to each ESXi host, across all exports (the load one mount puts on a host)")
	fl.BoolVar(&f.readOnly, "read-only", false, "refuse every write with EROFS")
	fl.StringVar(&f.libraryDatastore, "library-datastore", "", "datastore of libraries made by mkdir (default: the first that fits)")
	fl.BoolVar(&f.allowOther, "allow-other", false, "let other users see the mount")
	fl.BoolVar(&f.debug, "debug", false, "log every API call (never secrets)")
	fl.StringVar(&f.upload, "upload", "stream", "library uploads: stream (a file written in order is sent while it is written) or staged (every file staged whole and sent with its checksum first)")
	addOpsFlags(fl)           // running as a service: logging.go
	addTestFlags(fl, &f.test) // hidden: testflags.go
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: vspherefs mount [flags] MOUNTPOINT\n")
		printVisibleFlags(fl)
	}
	fl.SetOutput(io.Discard) // errors are one line, below
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fl.SetOutput(os.Stdout)
			fl.Usage()
			return nil, nil // -h
		}
		return nil, usagef("%v", err)
	}
	set := map[string]bool{}
	fl.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if err := checkFlags(f, fl.Args(), set); err != nil {
		return nil, err
	}
	f.mountpoint, f.given = fl.Arg(0), set
	return &f, nil
}

// mountConfig is a mount's settings once parsed and checked locally.
type mountConfig struct {
	f                      *mountFlags
	log                    *slog.Logger
	uid, gid, umask        uint32
	cacheBytes, spoolBytes int64
	directReadBytes        int64
	logins                 *guest.GuestLogins
	cfg                    backend.Config
	obs                    *metrics.Metrics
	cd                     *cacheDir
	mountpoint             string
	closers                []func() // undone at the end, last first
}

func (c *mountConfig) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// configure checks everything that can be checked before the login: the
// flags' values, the mountpoint and the cache dir; it starts the simulator
// for --sim. The returned config is to be closed even with an error.
func configure(f *mountFlags) (*mountConfig, error) {
	c := &mountConfig{f: f}
	mountpoint := f.mountpoint

	log := newLogger(f.debug) // --log-file, --log-format, --log-level
	slog.SetDefault(log)
	uid, gid, umask, err := ops.owner()
	if err != nil {
		return c, err
	}

	// Everything that can be checked locally is checked before the login:
	// the flags' values, then the mountpoint and the cache dir.
	cacheBytes, err := parseSize(f.cacheSize)
	if err != nil {
		return c, usagef("--cache-size %q: %v", f.cacheSize, err)
	}
	var spoolBytes int64
	if f.spoolSize != "" {
		if spoolBytes, err = parseSize(f.spoolSize); err != nil {
			return c, usagef("--spool-size %q: %v", f.spoolSize, err)
		}
	}
	// Off unless asked: without the kernel's read-ahead, each small read
	// (sha256sum's 32 KiB) is a round trip to the mount (BENCHMARKS.md).
	var directReadBytes int64
	if f.directReadSize != "" {
		if directReadBytes, err = parseSize(f.directReadSize); err != nil {
			return c, usagef("--direct-read-size %q: %v", f.directReadSize, err)
		}
	}
	if _, err := guest.NewGuestLogins(f.guestLogin, ""); err != nil {
		return c, usagef("--guest-login: %v", err)
	}
	logins, err := guest.NewGuestLogins(f.guestLogin, f.guestLoginFile)
	if err != nil {
		return c, usagef("--guest-login-file: %v", err)
	}
	if err := checkMountpoint(mountpoint); err != nil {
		return c, err
	}
	// The block cache is most of the heap and turns over all the time: keep
	// the process near its budget instead of letting the GC double it. The
	// margin is for blocks in flight (read-ahead), buffers and stacks; the
	// goal is a peak RSS within --cache-size + 64 MiB (BENCHMARKS.md).
	// VSPHEREFS_MEM_MARGIN_MIB (a benchmark knob) sets another margin.
	margin := int64(48)
	if v, err := strconv.ParseInt(os.Getenv("VSPHEREFS_MEM_MARGIN_MIB"), 10, 64); err == nil && v > 0 {
		margin = v
	}
	debug.SetMemoryLimit(cacheBytes + margin<<20)

	cfg := backend.Config{Insecure: f.insecure, CACerts: f.caCerts, Thumbprint: f.thumbprint, Timeout: f.timeout, Log: log, Debug: f.debug}
	obs := metrics.New(log, f.debug) // status, metrics, progress: service.go
	cfg.Observer = obs
	if f.sim {
		s, err := sim.Start(sim.Options{Demo: true})
		if err != nil {
			return c, fmt.Errorf("simulator: %w", err)
		}
		if f.guestLogin == "" {
			f.guestLogin = sim.GuestLoginString() // what the simulated guests accept
			logins, _ = guest.NewGuestLogins(f.guestLogin, f.guestLoginFile)
		}
		c.closers = append(c.closers, s.Close)
		ca, err := s.CertificateFile()
		if err != nil {
			return c, err
		}
		// Lines a shell can take as they are: export $(grep ^GOVC_ LOG).
		fmt.Println(s.GovcURL())
		fmt.Println("GOVC_TLS_CA_CERTS=" + ca)
		fmt.Fprintf(os.Stderr, "govc: export the two GOVC_ lines above; or GOVC_INSECURE=1; or pin with govc's -tls-known-hosts FILE, a line \"%s %s\"\n", s.URL.Host, s.Thumbprint)
		f.url = s.URL.String()
		if cfg.Thumbprint == "" && !cfg.Insecure && cfg.CACerts == "" {
			cfg.CACerts = ca // verify the simulator's certificate as a CA-signed one would be
		}
	}
	u, user, err := credentials(*f)
	if err != nil {
		return c, err
	}
	cfg.URL, cfg.User = u, user
	if !f.given["cache-dir"] { // each vCenter and user its own
		f.cacheDir = perServerCacheDir(f.cacheDir, u, user)
	}
	cd, err := openCacheDir(f.cacheDir, log)
	if err != nil {
		return c, fmt.Errorf("--cache-dir: %w", err)
	}
	c.closers = append(c.closers, cd.Close)
	if gc := f.test.gc; gc > 0 {
		go forceGC(gc) // test knob: nothing this process must keep may depend on a reference the GC can drop
	}

	c.log, c.uid, c.gid, c.umask = log, uid, gid, umask
	c.cacheBytes, c.spoolBytes, c.directReadBytes = cacheBytes, spoolBytes, directReadBytes
	c.logins, c.cfg, c.obs, c.cd, c.mountpoint = logins, cfg, obs, cd, mountpoint
	return c, nil
}

// serve logs in, makes the clients and the tree, mounts it, and serves it
// until it is unmounted or a signal ends it.
func serve(c *mountConfig) error {
	f, log, uid, gid, umask := c.f, c.log, c.uid, c.gid, c.umask
	cacheBytes, spoolBytes := c.cacheBytes, c.spoolBytes
	logins, cfg, obs, cd, mountpoint := c.logins, c.cfg, c.obs, c.cd, c.mountpoint
	ctx := context.Background()
	conn, err := backend.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if !f.readOnly && f.libraryDatastore != "" {
		if _, err := library.PickDatastore(ctx, conn, f.libraryDatastore, 0); err != nil {
			return fmt.Errorf("--library-datastore %s: %w", f.libraryDatastore, err)
		}
	}
	blocks, err := cache.New(cache.Options{Bytes: cacheBytes, Dir: cd.Spool, SpoolBytes: spoolBytes})
	if err != nil {
		return err
	}
	defer func() {
		if err := blocks.Close(); err != nil {
			slog.Error("unmount", "err", err)
		}
	}()
	// Download sessions unused for a minute are deleted (a test knob shortens it).
	idle := f.test.downloadIdle
	if idle <= 0 {
		idle = time.Minute
	}
	downloads := library.NewDownloads(conn, idle)
	defer downloads.Close()

	// Export spools live under --cache-dir while mounted; Close aborts any
	// export still running (no lease outlives the mount) and removes them.
	exports, err := nfc.NewExports(conn, filepath.Join(cd.Spool, "exports"), f.ttl)
	if err != nil {
		return fmt.Errorf("--cache-dir: %w", err)
	}
	defer exports.Close()
	exports.Transfers = nfc.NewTransfers(f.maxTransfers)

	var writes *fs.Writes
	if !f.readOnly {
		lw := library.NewLibraryWriter(conn)
		// Update sessions a killed mount with this cache dir left open are
		// ended now; this mount's own are recorded there while open.
		if err := lw.TrackSessions(ctx, cd.Sessions); err != nil {
			return fmt.Errorf("--cache-dir: %w", err)
		}
		defer lw.Close()
		if writes, err = fs.NewWrites(libraryWriterFS{lw}, cd.Staging, cd.Recovery, cd.Times); err != nil {
			return fmt.Errorf("--cache-dir: %w", err)
		}
		if f.upload == "staged" {
			writes.StreamAfter = 0 // checksum-first: every file staged whole
		}
		writes.PickDatastore = func(ctx context.Context) (string, error) {
			return library.PickDatastore(ctx, conn, f.libraryDatastore, 0)
		}
		if f.test.streamAfter > 0 {
			writes.StreamAfter = f.test.streamAfter // a test knob: stream small files too
		}
		if f.test.holdTimeout > 0 {
			writes.HoldTimeout = f.test.holdTimeout
		}
	}
	// Test knobs: how soon the guest inode table is swept.
	inoSweep, inoGrace := f.test.inoSweep, f.test.inoGrace
	var passthrough atomic.Int64
	committing := writes.Busy // both trees' commits (none without writes: --read-only)
	server, err := fs.Mount(mountpoint, fs.Options{
		Catalog:   library.NewCatalog(conn, f.ttl),
		Downloads: downloadsFS{downloads},
		Guests:    guestsFS{guest.NewGuests(conn, logins, f.ttl)},
		Cache:     blocks,
		TTL:       f.ttl,
		ReadOnly:  f.readOnly,
		Writes:    writes,
		Log:       log,

		StagingDir:  cd.Staging,
		RecoveryDir: cd.Recovery,

		Exports:       exports,
		OpenDiskImage: openDiskImage,
		Spaces:        backend.NewSpaces(conn, f.ttl),

		Passthrough:    &passthrough,
		DirectReadSize: c.directReadBytes,

		InoSweep: inoSweep,
		InoGrace: inoGrace,

		UID: uid, GID: gid, Umask: umask, FsName: cfg.URL.Host, StatusSocket: statusSocket(cd.Spool),
	}, f.allowOther, false)
	if err != nil {
		detachIfMounted(mountpoint) // never leave a dead mount behind
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	log.Info("mounted", "mountpoint", mountpoint, "server", cfg.URL.Host, "pid", os.Getpid())
	stopService, err := startService(server, service{mountpoint: mountpoint, host: cfg.URL.Host, // service.go
		cacheDir: f.cacheDir, spool: cd.Spool, obs: obs, cache: blocks, writes: writes, passthrough: &passthrough,
		progressEvery: f.test.progressEvery})
	if err != nil {
		return err
	}
	defer stopService()

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	closeCtx := ctx
	select {
	case s := <-sig:
		log.Info("unmounting", "signal", s.String())
		exports.Close() // abort exports first: a stat waiting for one would keep the mount busy
		var cancel context.CancelFunc
		closeCtx, cancel = unmount(server, mountpoint, done, committing, sig, f.timeout, log)
		defer cancel()
		signal.Reset(syscall.SIGINT, syscall.SIGTERM) // from now on a signal ends the process at once
	case <-done: // umount MOUNTPOINT
	}
	log.Info("unmounted", "mountpoint", mountpoint)
	if writes != nil {
		if lost := writes.Close(closeCtx); len(lost) > 0 {
			for _, p := range lost {
				log.Error("not committed; bytes kept", "recovery", p)
			}
			return fmt.Errorf("%d file(s) could not be committed at unmount; their bytes are in %s", len(lost), cd.Recovery)
		}
	}
	return nil
}

// checkFlags refuses what the flags cannot mean together, naming the flags.
func checkFlags(f mountFlags, args []string, set map[string]bool) error {
	switch {
	case len(args) == 0:
		return usagef("no MOUNTPOINT given: vspherefs mount [flags] MOUNTPOINT")
	case len(args) > 1 && strings.HasPrefix(args[1], "-"):
		return usagef("%s after the mountpoint %s: flags go before MOUNTPOINT", args[1], args[0])
	case len(args) > 1:
		return usagef("one MOUNTPOINT expected, got %d: %s", len(args), strings.Join(args, " "))
	}
	name := func(flag, env string) string {
		if set[flag] {
			return "--" + flag
		}
		return "$" + env
	}
	if f.insecure && f.thumbprint != "" {
		return usagef("%s and --thumbprint conflict: one turns TLS verification off, the other pins a certificate", name("insecure", "GOVC_INSECURE"))
	}
	if f.insecure && f.caCerts != "" {
		return usagef("%s and %s conflict: one turns TLS verification off, the other adds CAs to verify with", name("insecure", "GOVC_INSECURE"), name("ca-certs", "GOVC_TLS_CA_CERTS"))
	}
	if set["password"] && set["password-file"] {
		return usagef("--password and --password-file conflict: give one")
	}
	if f.sim && set["url"] {
		return usagef("--sim and --url conflict: --sim mounts its own simulator")
	}
	if f.ttl < 0 {
		return usagef("--ttl %v: must not be negative", f.ttl)
	}
	if f.timeout <= 0 {
		return usagef("--timeout %v: must be positive", f.timeout)
	}
	if f.upload != "stream" && f.upload != "staged" {
		return usagef("--upload %q: stream or staged", f.upload)
	}
	if f.maxTransfers < 1 {
		return usagef("--max-transfers %d: must be at least 1", f.maxTransfers)
	}
	if f.readOnly && set["library-datastore"] {
		return usagef("--read-only and --library-datastore conflict: a read-only mount makes no library")
	}
	return nil
}

// forceGC runs the garbage collector all the time (a test knob).
func forceGC(every time.Duration) {
	for range time.Tick(every) {
		runtime.GC()
		debug.FreeOSMemory()
	}
}

// unmount ends the mount after a signal: it waits (up to deadline) for
// commits to finish, since a close waiting for one keeps the mount busy,
// then unmounts; if files are still open it detaches the mount lazily, so
// that the mountpoint is never left dead, and logs who held what. A second
// signal stops the wait. The context returned bounds what Writes.Close may
// still wait for.
func unmount(server interface{ Unmount() error }, mountpoint string, done <-chan struct{}, committing func() bool, sig <-chan os.Signal, deadline time.Duration, log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	forced, told := false, false
	for {
		if err := server.Unmount(); err == nil {
			<-done
			return ctx, cancel
		}
		if !committing() {
			break // files are open: waiting would not end it
		}
		if !told {
			log.Info("waiting for the commits still running; a second signal stops waiting", "timeout", deadline)
			told = true
		}
		select {
		case <-tick.C:
			continue
		case <-ctx.Done():
			log.Warn("commits still running after --timeout; detaching the mount", "timeout", deadline)
		case s := <-sig:
			log.Warn("second signal: not waiting for the commits still running", "signal", s.String())
			forced = true
		}
		break
	}
	if forced {
		cancel()
	}
	holders := openUnder(mountpoint)
	conn := fuseConn(mountpoint)
	if err := detach(mountpoint); err != nil {
		log.Error("lazy unmount failed", "mountpoint", mountpoint, "err", err.Error())
		return ctx, cancel
	}
	log.Warn("files were still open: mount detached lazily (their next access fails)", "mountpoint", mountpoint, "open", strings.Join(holders, "; "))
	if abortConn(conn) {
		select {
		case <-done: // the connection ended: no request reaches what is closed next
		case <-time.After(time.Second):
		}
	}
	return ctx, cancel
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
