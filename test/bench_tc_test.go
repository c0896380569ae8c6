package test

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vspherefs/vspherefs/test/sim"
)

// capSim, with BENCH_TC set to a rate (e.g. 1gbit), caps what the
// simulator's port sends on loopback to that rate, with a Linux tc HTB
// qdisc whose u32 filter matches only that source port (other loopback
// traffic goes through a default class at 100gbit), removed when the
// benchmark ends. It skips the benchmark where tc is missing, we are not
// root, or lo already has a root qdisc (someone else's; never replaced).
func capSim(b *testing.B, s *sim.Server) {
	rate := os.Getenv("BENCH_TC")
	if rate == "" {
		return
	}
	if _, err := exec.LookPath("tc"); err != nil {
		b.Skip("BENCH_TC: tc is missing, no capped mode")
	}
	if os.Geteuid() != 0 {
		b.Skip("BENCH_TC: tc needs root, no capped mode")
	}
	if out, _ := exec.Command("tc", "qdisc", "show", "dev", "lo").CombinedOutput(); !strings.Contains(string(out), "noqueue") {
		b.Skipf("BENCH_TC: lo already has a qdisc (%s): not replaced", strings.TrimSpace(string(out)))
	}
	_, port, err := net.SplitHostPort(s.URL.Host)
	if err != nil {
		b.Fatal(err)
	}
	tc := func(args ...string) {
		if out, err := exec.Command("tc", args...).CombinedOutput(); err != nil {
			b.Fatalf("tc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	b.Cleanup(func() {
		if out, err := exec.Command("tc", "qdisc", "del", "dev", "lo", "root").CombinedOutput(); err != nil {
			b.Errorf("removing the tc qdisc from lo: %v\n%s", err, out)
		}
	})
	tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1")
	tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "100gbit")
	tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate", rate, "ceil", rate)
	tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "sport", port, "0xffff", "flowid", "1:10")
	b.Logf("BENCH_TC: the simulator's port %s sends at most %s on lo", port, rate)
}
