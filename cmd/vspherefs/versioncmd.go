package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// revision is set by `make build` (-ldflags -X main.revision=…) when Go's
// own VCS stamping is not in the binary.
var revision string

// versionString is the release, the module version and the VCS revision the
// binary was built from (`make build` builds with -buildvcs=auto).
func versionString() string {
	s := "vspherefs " + version
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return s + " " + runtime.Version()
	}
	mod := bi.Main.Version
	if mod == "" {
		mod = "(devel)"
	}
	s += " module " + bi.Main.Path + "@" + mod
	var rev, when, dirty string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			when = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" && revision != "" {
		rev, when = revision, "make build"
	}
	if rev != "" {
		s += fmt.Sprintf(" revision %s%s (%s)", rev, dirty, when)
	} else {
		s += " revision unknown (built without VCS stamping)"
	}
	return s + " " + bi.GoVersion
}
