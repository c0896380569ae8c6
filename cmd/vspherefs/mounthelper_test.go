package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestHelperArgs(t *testing.T) {
	args, fake, err := helperArgs([]string{"vc.example.com", "/mnt/vc", "-o",
		"rw,credentials=/etc/vc.cred,cache_dir=/var/cache/v,ttl=5s,ro,allow_other,uid=10,gid=20,umask=027,_netdev,nofail,x-systemd.automount,noauto,user", "-n"})
	if err != nil || fake {
		t.Fatal(err, fake)
	}
	want := []string{"--daemon", "--url", "vc.example.com", "--credentials", "/etc/vc.cred", "--cache-dir", "/var/cache/v",
		"--ttl", "5s", "--read-only", "--allow-other", "--uid", "10", "--gid", "20", "--umask", "027", "/mnt/vc"}
	if !reflect.DeepEqual(args, want) {
		t.Errorf("got  %q\nwant %q", args, want)
	}
	if _, fake, err := helperArgs([]string{"vspherefs", "/mnt", "-f", "-oro"}); err != nil || !fake {
		t.Errorf("-f: %v %v", fake, err)
	}
	for _, bad := range [][]string{
		{"vc", "/mnt", "-o", "password=x"},
		{"user:pw@vc", "/mnt"},
		{"vc", "/mnt", "-o", "bogus"},
		{"vc", "/mnt", "-o", "ttl"},
		{"vc", "/mnt", "-o", "ro=1"},
		{"/mnt"},
	} {
		if _, _, err := helperArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "=x") {
			t.Errorf("%q: error shows the secret: %v", bad, err)
		}
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cred")
	if err := os.WriteFile(p, []byte("# c\n\nGOVC_URL=vc.example.com\nexport GOVC_USERNAME=\"u@x\"\nGOVC_PASSWORD=p=a ss\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOVC_URL", "")
	t.Setenv("GOVC_USERNAME", "")
	t.Setenv("GOVC_PASSWORD", "")
	if err := loadCredentials(p); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("GOVC_URL") != "vc.example.com" || os.Getenv("GOVC_USERNAME") != "u@x" || os.Getenv("GOVC_PASSWORD") != "p=a ss" {
		t.Errorf("got %q %q %q", os.Getenv("GOVC_URL"), os.Getenv("GOVC_USERNAME"), os.Getenv("GOVC_PASSWORD"))
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := loadCredentials(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a group-readable file: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("PASSWORD=hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loadCredentials(bad); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("an unknown line: %v", err)
	}
}
