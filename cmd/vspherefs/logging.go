package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strconv"
	"strings"
)

// opsFlags are the flags of running vspherefs as a service: background
// mode, logs, credentials, status, metrics, ownership. They are added to the
// mount's flag set by addOpsFlags.
type opsFlags struct {
	daemon      bool
	credentials string
	logFile     string
	logFormat   string
	logLevel    string
	metrics     string
	uid, gid    int
	umask       string

	logOut io.Writer // where the logger writes (set by newLogger)
}

var ops = opsFlags{uid: -1, gid: -1}

func addOpsFlags(fl *flag.FlagSet) {
	fl.BoolVar(&ops.daemon, "daemon", false, "return once the mount answers (exit 0), or with the error; keep serving in the background")
	fl.StringVar(&ops.credentials, "credentials", "", "root-only file of GOVC_URL=, GOVC_USERNAME=, GOVC_PASSWORD= lines")
	fl.StringVar(&ops.logFile, "log-file", "", "append the log to this file (default: stderr; with --daemon, syslog)")
	fl.StringVar(&ops.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&ops.logLevel, "log-level", "info", "least level logged: debug, info, warn or error (--debug implies debug)")
	fl.StringVar(&ops.metrics, "metrics", "", "serve Prometheus metrics on this address (host:port), at /metrics")
	fl.IntVar(&ops.uid, "uid", -1, "owner of files the API gives no owner (default: the mounting user)")
	fl.IntVar(&ops.gid, "gid", -1, "group of files the API gives no group (default: the mounting user's)")
	fl.StringVar(&ops.umask, "umask", "", "octal bits taken from the modes of files the API gives no mode (e.g. 027)")
}

// newLogger makes the mount's logger from --log-file, --log-format and
// --log-level (debug, as with --debug, names each transfer's host and path).
func newLogger(debug bool) *slog.Logger {
	log, err := makeLogger(debug)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vspherefs:", err)
		os.Exit(2)
	}
	return log
}

func makeLogger(debug bool) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(ops.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", ops.logLevel)
	}
	if debug {
		level = slog.LevelDebug
	}
	var out io.Writer = os.Stderr
	switch {
	case ops.logFile != "":
		f, err := os.OpenFile(ops.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("--log-file: %w", err)
		}
		out = f
	case daemonChild():
		// A background mount has no terminal: the system log, or nothing.
		if w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "vspherefs"); err == nil {
			out = w
		} else {
			out = io.Discard
		}
	}
	ops.logOut = out
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(ops.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(out, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(out, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", ops.logFormat)
}

// owner is the uid and gid to show (-1: the mounting user's) and the umask.
func (o *opsFlags) owner() (uid, gid uint32, umask uint32, err error) {
	uid, gid = uint32(os.Getuid()), uint32(os.Getgid())
	if o.uid >= 0 {
		uid = uint32(o.uid)
	}
	if o.gid >= 0 {
		gid = uint32(o.gid)
	}
	if o.umask != "" {
		m, err := strconv.ParseUint(o.umask, 8, 32)
		if err != nil || m > 0o777 {
			return 0, 0, 0, fmt.Errorf("--umask %q: want octal bits such as 022", o.umask)
		}
		umask = uint32(m)
	}
	return uid, gid, umask, nil
}
