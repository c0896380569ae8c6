package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vspherefs/vspherefs/test/sim"
)

const simUsage = `Usage: vspherefs sim [flags]

Runs the embedded vCenter simulator with demo content until Ctrl-C, and prints
the GOVC_URL and guest login to use with govc or "vspherefs mount".

Flags:
`

const faultHelp = `transport fault to inject, repeatable: '[METHOD ]PATTERN[#CALL]=ACTION[xN]'
PATTERN is matched against path and query ('*' any run of characters), CALL a
SOAP method in the body; ACTION one of 503, stall-after:SIZE, reset-after:SIZE,
hang, refuse; xN faults only the first N matching requests. E.g.
'GET /guestFile*=stall-after:1MiB', 'GET /rest/com/vmware/cis/data/*=503x3',
'POST /sdk#InitiateFileTransferFromGuest=503x2', 'GET /nfc/*=reset-after:512KiB'`

// repeated is a flag that may be given more than once.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ", ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func runSim(args []string) error {
	fl := flag.NewFlagSet("sim", flag.ContinueOnError)
	fl.Usage = func() {
		fmt.Fprint(fl.Output(), simUsage)
		fl.PrintDefaults()
	}
	listen := fl.String("listen", "127.0.0.1:8989", "address to listen on (127.0.0.1:0 picks a free port)")
	login := fl.String("login", "user:pass", "vCenter credentials the simulator accepts, USER:PASS")
	guestLogin := fl.String("guest-login", sim.GuestLoginString(), "guest OS login the simulated VMs accept, USER:PASS")
	ranges := fl.Bool("range", false, "library downloads answer Range with 206 (vcsim, like some endpoints, ignores Range)")
	var faults repeated
	fl.Var(&faults, "fault", faultHelp)
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		os.Exit(2) // the flag package said what was wrong, and the usage
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("sim takes no arguments (got %q); see vspherefs sim -h", fl.Arg(0))
	}
	user, err := parseLogin(*login)
	if err != nil {
		return fmt.Errorf("--login: %w", err)
	}
	guestUser, err := parseLogin(*guestLogin)
	if err != nil {
		return fmt.Errorf("--guest-login: %w", err)
	}
	for _, f := range faults {
		if _, err := sim.ParseFault(f); err != nil {
			return fmt.Errorf("--fault: %w", err)
		}
	}
	s, err := sim.Start(sim.Options{Listen: *listen, Login: user, Demo: true, GuestLogin: guestUser, Ranges: *ranges, Faults: faults})
	if err != nil {
		if strings.Contains(err.Error(), "cannot listen") {
			return fmt.Errorf("--listen: %w", err)
		}
		return err
	}
	defer s.Close()
	fmt.Println(s.GovcURL())
	fmt.Printf("GOVC_GUEST_LOGIN=%s\n", *guestLogin)
	fmt.Fprintf(os.Stderr, "thumbprint %s; library Range support %s", s.Thumbprint, onOff(*ranges))
	for _, f := range faults {
		fmt.Fprintf(os.Stderr, "; fault %s", f)
	}
	fmt.Fprintln(os.Stderr, "; Ctrl-C stops the simulator")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func parseLogin(s string) (*url.Userinfo, error) {
	u, p, ok := strings.Cut(s, ":")
	if !ok || u == "" {
		return nil, fmt.Errorf("want USER:PASS")
	}
	return url.UserPassword(u, p), nil
}
