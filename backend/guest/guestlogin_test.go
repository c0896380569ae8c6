package guest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGuestLoginsFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "logins")
	os.WriteFile(file, []byte(strings.Join([]string{
		"# comment",
		"",
		"web-*       = root:se:cret",
		`db\=primary = postgres:pa=ss word`,
		"win?  =  administrator:Passw0rd\r",
	}, "\n")), 0o600)
	l, err := NewGuestLogins("user:default", file)
	if err != nil {
		t.Fatal(err)
	}
	for vm, want := range map[string]string{
		"web-1":      "root:se:cret",
		"db=primary": "postgres:pa=ss word",
		"win1":       "administrator:Passw0rd",
		"win10":      "user:default",
		"other":      "user:default",
	} {
		u := l.For(vm)
		p, _ := u.Password()
		if got := u.Username() + ":" + p; got != want {
			t.Errorf("%s: %q, want %q", vm, got, want)
		}
	}
	none, _ := NewGuestLogins("", "")
	if none.For("x") != nil {
		t.Fatal("login without any configured")
	}
}

func TestGuestLoginsErrorsHideSecrets(t *testing.T) {
	if _, err := NewGuestLogins("nocolon-secret", ""); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("%v", err)
	}
	file := filepath.Join(t.TempDir(), "logins")
	os.WriteFile(file, []byte("vm = :topsecret\n"), 0o600)
	if _, err := NewGuestLogins("", file); err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("%v", err)
	}
	os.WriteFile(file, []byte("just-a-line-with-secret\n"), 0o600)
	if _, err := NewGuestLogins("", file); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("%v", err)
	}
}
