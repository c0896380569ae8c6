package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vspherefs/vspherefs/metrics"
	"github.com/vspherefs/vspherefs/status"
)

// runStatus is `vspherefs status [--json] [MOUNTPOINT]`: what the mount is
// doing, from its status socket. Without MOUNTPOINT, every vspherefs mount
// of /proc/self/mounts that answers.
func runStatus(args []string) error {
	fl := flag.NewFlagSet("status", flag.ExitOnError)
	asJSON := fl.Bool("json", false, "print the status as JSON (one object per mount, a list without MOUNTPOINT)")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: vspherefs status [--json] [MOUNTPOINT]\n")
		fl.PrintDefaults()
	}
	_ = fl.Parse(args)
	var dirs []string
	switch fl.NArg() {
	case 0:
		dirs = vspherefsMounts()
		if len(dirs) == 0 {
			return fmt.Errorf("no vspherefs mount")
		}
	case 1:
		dirs = []string{fl.Arg(0)}
	default:
		fl.Usage()
		os.Exit(2)
	}
	var snaps []*status.Snapshot
	var firstErr error
	for _, d := range dirs {
		s, err := queryStatus(d)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			fmt.Fprintln(os.Stderr, "vspherefs:", err)
			continue
		}
		snaps = append(snaps, s)
	}
	if len(snaps) == 0 {
		return firstErr
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if fl.NArg() == 1 {
			return enc.Encode(snaps[0])
		}
		return enc.Encode(snaps)
	}
	for i, s := range snaps {
		if i > 0 {
			fmt.Println()
		}
		printStatus(os.Stdout, s)
	}
	return nil
}

func queryStatus(dir string) (*status.Snapshot, error) { return status.Query(dir) }

// vspherefsMounts lists the fuse.vspherefs mountpoints.
func vspherefsMounts() []string {
	b, _ := os.ReadFile("/proc/self/mounts")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "fuse.vspherefs" {
			out = append(out, unescapeMount(f[1]))
		}
	}
	return out
}

func printStatus(w io.Writer, s *status.Snapshot) {
	fmt.Fprintf(w, "%s: %s, pid %d, up %s, cache dir %s\n", s.Mountpoint, s.Server, s.PID,
		time.Since(s.Started).Round(time.Second), s.CacheDir)
	fmt.Fprintf(w, "cache %s of %s in memory, spool %s on disk\n", size(s.CacheBytes), size(s.CacheLimitBytes), size(s.SpoolBytes))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	if len(s.Transfers) == 0 {
		fmt.Fprintln(w, "no transfer in flight")
	} else {
		fmt.Fprintln(tw, "PATH\tKIND\tSTATE\tDONE\tTOTAL\tRATE\tETA\tHOST\tURL PATH")
		for _, t := range s.Transfers {
			total, eta := "?", ""
			if t.Total >= 0 {
				total = size(t.Total)
			}
			if t.ETA > 0 {
				eta = (time.Duration(t.ETA) * time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s/s\t%s\t%s\t%s\n", t.Path, t.Kind, t.State, size(t.Done), total, size(int64(t.Rate)), eta, t.Host, t.URLPath)
		}
		tw.Flush()
	}
	if s.Commits > 0 {
		fmt.Fprintf(w, "library commits running or queued: %d\n", s.Commits)
	}
	for _, h := range s.Held {
		fmt.Fprintf(w, "staged: %s (%s)\n", h.Path, h.State)
	}
	for _, r := range s.Recovery {
		fmt.Fprintf(w, "recovery: %s\n", r)
	}
	for _, k := range metrics.SortedKeys(s.Sessions) {
		fmt.Fprintf(w, "%s sessions held: %d\n", k, s.Sessions[k])
	}
	var calls, faults int64
	for _, n := range s.Calls {
		calls += n
	}
	for _, n := range s.Faults {
		faults += n
	}
	fmt.Fprintf(w, "API calls since mount: %d, failed: %d\n", calls, faults)
	for _, k := range metrics.SortedKeys(s.Faults) {
		fmt.Fprintf(w, "  %s: %d\n", k, s.Faults[k])
	}
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
