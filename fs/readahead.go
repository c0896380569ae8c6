package fs

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// The kernel caps a FUSE mount's read-ahead at its backing device's
// read_ahead_kb (128 KiB unless set), whatever max_readahead the mount asks
// for: a sequential read through the page cache then reaches the mount as
// 128 KiB requests, eight per MiB, each a request read, a reply written and
// a block lookup (BENCHMARKS.md, ninth session: 9.1 writes per MiB read,
// 2.1 once raised). gcsfuse and rclone mount document the same knob.
// Raising it needs root (sysfs); others keep the kernel's default.

// raiseReadAhead sets the read_ahead_kb of the device dev ("major:minor")
// to at least kb.
func raiseReadAhead(dev string, kb int, log *slog.Logger) {
	if dev == "" {
		return
	}
	p := "/sys/class/bdi/" + dev + "/read_ahead_kb"
	b, err := os.ReadFile(p)
	if err != nil {
		log.Debug("read-ahead left as the kernel set it", "file", p, "err", err.Error())
		return
	}
	if cur, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && cur >= kb {
		return
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(kb)), 0); err != nil {
		log.Debug("read-ahead left as the kernel set it", "file", p, "err", err.Error())
	}
}
