package main

import (
	"net"
	"os"
)

// sdNotify sends one sd_notify(3) message ("READY=1", "STATUS=…",
// "STOPPING=1") to $NOTIFY_SOCKET, as systemd's Type=notify expects. It does
// nothing when the variable is unset (not under systemd). The few lines of
// the protocol are all we need: a datagram on a unix socket, "@" naming an
// abstract one.
func sdNotify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}
