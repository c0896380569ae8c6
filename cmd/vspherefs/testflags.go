package main

import (
	"flag"
	"time"
)

// testKnobs shorten what tests cannot wait for. They are flags, not
// environment variables, so that a test says them on the command line it
// runs; they are hidden from -h (usage prints visibleFlags only).
type testKnobs struct {
	downloadIdle  time.Duration // download sessions unused this long are deleted (default 1m)
	inoSweep      int           // guest inode table: sweep after this many new entries (fs default)
	inoGrace      time.Duration // guest inode table: keep a forgotten node this long (fs default)
	holdTimeout   time.Duration // a closed temporary-named file waits this long for its rename (30s)
	progressEvery time.Duration // how often long transfers log their progress (5s)
	gc            time.Duration // run the garbage collector this often (off)
	streamAfter   int64         // the size at which a library file written in order streams (fs default)
}

// testFlagPrefix names the hidden flags.
const testFlagPrefix = "test-"

func addTestFlags(fl *flag.FlagSet, k *testKnobs) {
	fl.DurationVar(&k.downloadIdle, testFlagPrefix+"download-idle", 0, "test knob: delete download sessions idle this long")
	fl.IntVar(&k.inoSweep, testFlagPrefix+"ino-sweep", 0, "test knob: sweep the guest inode table after this many new entries")
	fl.DurationVar(&k.inoGrace, testFlagPrefix+"ino-grace", 0, "test knob: keep forgotten guest nodes this long")
	fl.DurationVar(&k.holdTimeout, testFlagPrefix+"hold-timeout", 0, "test knob: how long a temporary-named file waits for its rename")
	fl.DurationVar(&k.progressEvery, testFlagPrefix+"progress-every", 0, "test knob: how often transfers log their progress")
	fl.DurationVar(&k.gc, testFlagPrefix+"gc", 0, "test knob: force a garbage collection this often")
	fl.Int64Var(&k.streamAfter, testFlagPrefix+"stream-after", 0, "test knob: bytes at which a file written in order starts streaming")
}

// printVisibleFlags is fl.PrintDefaults without the test knobs.
func printVisibleFlags(fl *flag.FlagSet) {
	vis := flag.NewFlagSet(fl.Name(), flag.ContinueOnError)
	fl.VisitAll(func(f *flag.Flag) {
		if len(f.Name) < len(testFlagPrefix) || f.Name[:len(testFlagPrefix)] != testFlagPrefix {
			vis.Var(f.Value, f.Name, f.Usage)
			vis.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	vis.SetOutput(fl.Output())
	vis.PrintDefaults()
}
