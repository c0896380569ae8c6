package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vspherefs/vspherefs/test/sim"
)

func runSim(args []string) error {
	fl := flag.NewFlagSet("sim", flag.ExitOnError)
	listen := fl.String("listen", "127.0.0.1:8989", "address to listen on (127.0.0.1:0 picks a free port)")
	login := fl.String("login", "user:pass", "vCenter credentials the simulator accepts, USER:PASS")
	guestLogin := fl.String("guest-login", sim.GuestLoginString(), "guest OS login the simulated VMs accept, USER:PASS")
	_ = fl.Parse(args)
	user, err := parseLogin(*login)
	if err != nil {
		return fmt.Errorf("--login: %w", err)
	}
	guestUser, err := parseLogin(*guestLogin)
	if err != nil {
		return fmt.Errorf("--guest-login: %w", err)
	}
	s, err := sim.Start(sim.Options{Listen: *listen, Login: user, Demo: true, GuestLogin: guestUser})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Println(s.GovcURL())
	fmt.Fprintf(os.Stderr, "thumbprint %s; Ctrl-C stops the simulator\n", s.Thumbprint)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}

func parseLogin(s string) (*url.Userinfo, error) {
	u, p, ok := strings.Cut(s, ":")
	if !ok || u == "" {
		return nil, fmt.Errorf("want USER:PASS")
	}
	return url.UserPassword(u, p), nil
}
