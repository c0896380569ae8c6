package guest

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"
)

// GuestLogins resolves the guest OS login to use for a VM, by VM name.
//
// The login file (--guest-login-file) maps VM name patterns to logins, one
// rule a line, the first matching rule winning:
//
//	# comment; blank lines are ignored
//	web-*       = root:secret
//	db\=primary = postgres:pa=ss word
//	*           = administrator:Passw0rd
//
// The pattern (before the first unescaped "=") is a path.Match glob on the
// VM name, spaces around it trimmed; write "\=" for a literal "=" in a name.
// The login after it is USER:PASS, split at the first ":", so the password
// may hold ":", "=" and inner spaces; leading spaces are trimmed, nothing
// else. VMs no rule matches get the default login (--guest-login,
// $GOVC_GUEST_LOGIN). Passwords never appear in errors or logs.
type GuestLogins struct {
	def   *url.Userinfo
	rules []loginRule
}

type loginRule struct {
	pattern string
	login   *url.Userinfo
}

// ParseGuestLogin parses USER:PASS. Its error never repeats the input.
func ParseGuestLogin(s string) (*url.Userinfo, error) {
	user, pass, ok := strings.Cut(s, ":")
	if !ok || user == "" {
		return nil, errors.New("want USER:PASS")
	}
	return url.UserPassword(user, pass), nil
}

// NewGuestLogins makes a resolver from a default login ("" for none) and a
// login file ("" for none).
func NewGuestLogins(def, file string) (*GuestLogins, error) {
	l := &GuestLogins{}
	if def != "" {
		u, err := ParseGuestLogin(def)
		if err != nil {
			return nil, fmt.Errorf("guest login: %w", err)
		}
		l.def = u
	}
	if file == "" {
		return l, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		i := unescapedEquals(line)
		if i < 0 {
			return nil, fmt.Errorf("%s:%d: want PATTERN = USER:PASS", file, n)
		}
		pattern := strings.TrimSpace(line[:i])
		if _, err := path.Match(pattern, ""); err != nil || pattern == "" {
			return nil, fmt.Errorf("%s:%d: bad pattern", file, n)
		}
		u, err := ParseGuestLogin(strings.TrimLeft(line[i+1:], " \t"))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		l.rules = append(l.rules, loginRule{pattern: pattern, login: u})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return l, nil
}

func unescapedEquals(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '=':
			return i
		}
	}
	return -1
}

// For returns the login for a VM, or nil if there is none.
func (l *GuestLogins) For(vm string) *url.Userinfo {
	if l == nil {
		return nil
	}
	for _, r := range l.rules {
		if ok, _ := path.Match(r.pattern, vm); ok {
			return r.login
		}
	}
	return l.def
}
