package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// credentialKeys are the lines a credentials file may hold, in govc's names.
var credentialKeys = map[string]bool{
	"GOVC_URL": true, "GOVC_USERNAME": true, "GOVC_PASSWORD": true,
	"GOVC_GUEST_LOGIN": true, "GOVC_INSECURE": true, "GOVC_TLS_CA_CERTS": true,
}

// loadCredentials reads a credentials file (KEY=VALUE lines in govc's
// GOVC_* names, # comments) into the environment of this process, where the
// mount's flags take their defaults, so that no secret is ever on a command
// line. The file must belong to this user (or root) and be readable by no
// one else: a password others can read is refused, not used.
func loadCredentials(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("credentials %s: not a regular file", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("credentials %s: owned by uid %d, not by you or root", path, st.Uid)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("credentials %s: mode %04o lets other users read or change it; chmod 600 it", path, perm)
	}
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || !credentialKeys[k] {
			// Never echo the line: it may hold the password.
			return fmt.Errorf("credentials %s: line %d: want one of GOVC_URL=, GOVC_USERNAME=, GOVC_PASSWORD=, GOVC_GUEST_LOGIN=, GOVC_INSECURE=, GOVC_TLS_CA_CERTS=", path, n)
		}
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		}
		vals[k] = v
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	for k, v := range vals {
		os.Setenv(k, v)
	}
	return nil
}
