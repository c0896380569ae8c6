// Command vspherefs mounts a vCenter's transfer APIs as plain folders.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

var version = "0.1.0-dev"

const usage = `vspherefs mounts a vCenter's content libraries, guest files and VM exports as folders.

Usage:
  vspherefs mount [flags] MOUNTPOINT   mount (foreground, or --daemon; exits after SIGINT, SIGTERM or umount)
  vspherefs unmount MOUNTPOINT         wait for pending commits, then unmount
  vspherefs status [--json] [MOUNTPOINT]  transfers, commits, sessions, cache, API calls of a mount
  vspherefs sim [flags]                run the embedded vCenter simulator with demo content
  vspherefs version
  mount.fuse.vspherefs SOURCE MOUNTPOINT -o OPTIONS   (the binary under that name: mount -t fuse.vspherefs)

Run "vspherefs mount -h" or "vspherefs sim -h" for flags.
`

func main() {
	if filepath.Base(os.Args[0]) == helperName {
		if err := runHelper(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, helperName+":", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if p := os.Getenv("VSPHEREFS_CPUPROFILE"); p != "" { // for benchmarks
		if f, err := os.Create(p); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	var err error
	switch os.Args[1] {
	case "mount":
		err = mountCommand(os.Args[2:])
	case "unmount", "umount":
		err = runUnmount(os.Args[2:])
	case "status":
		err = runStatus(os.Args[2:])
	case "sim":
		err = runSim(os.Args[2:])
	case "version", "--version", "-v":
		fmt.Println(versionString())
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "vspherefs: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "vspherefs:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
