package main

import (
	"fmt"
	"strings"
)

// The mount(8) helper: `mount -t fuse.vspherefs SOURCE DIR -o OPTS` and
// /etc/fstab lines run /sbin/mount.fuse.vspherefs SOURCE DIR -o OPTS (the
// binary, linked under that name). It always mounts in the background, and
// returns once the filesystem answers, as mount(8) expects of a helper.

// helperName is the name under which the binary acts as the helper.
const helperName = "mount.fuse.vspherefs"

// valueOptions are the -o options that map to a `vspherefs mount` flag taking a value.
var valueOptions = map[string]string{
	"url": "url", "username": "username", "password_file": "password-file",
	"credentials": "credentials", "ca_certs": "ca-certs", "thumbprint": "thumbprint",
	"guest_login_file": "guest-login-file", "cache_size": "cache-size", "spool_size": "spool-size", "direct_read_size": "direct-read-size",
	"cache_dir": "cache-dir", "ttl": "ttl", "timeout": "timeout", "library_datastore": "library-datastore",
	"log_file": "log-file", "log_format": "log-format", "log_level": "log-level", "metrics": "metrics",
	"uid": "uid", "gid": "gid", "umask": "umask", "upload": "upload",
}

// boolOptions are the -o options that map to a boolean flag.
var boolOptions = map[string]string{
	"ro": "read-only", "read_only": "read-only", "allow_other": "allow-other",
	"insecure": "insecure", "debug": "debug",
}

// ignoredOptions are what mount(8), fstab and systemd pass that mean nothing
// to vspherefs (the kernel's defaults apply; ownership checks are mount(8)'s).
var ignoredOptions = map[string]bool{
	"rw": true, "defaults": true, "auto": true, "noauto": true, "user": true, "users": true,
	"nouser": true, "owner": true, "group": true, "_netdev": true, "nofail": true,
	"exec": true, "noexec": true, "suid": true, "nosuid": true, "dev": true, "nodev": true,
	"async": true, "sync": true, "atime": true, "noatime": true, "relatime": true,
	"norelatime": true, "strictatime": true, "nodiratime": true, "diratime": true,
	"lazytime": true, "nolazytime": true, "silent": true, "loud": true, "default_permissions": true,
}

// secretOptions would put a secret on a command line (and in /proc/mounts' options).
var secretOptions = map[string]bool{"password": true, "guest_login": true}

// helperArgs turns mount(8)'s argv (SOURCE DIR [-o OPTS] [-n] [-s] [-v] [-f])
// into `vspherefs mount --daemon` arguments. fake is -f: check, mount nothing.
func helperArgs(argv []string) (args []string, fake bool, err error) {
	var pos, opts []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-o":
			if i+1 >= len(argv) {
				return nil, false, fmt.Errorf("-o needs options")
			}
			i++
			opts = append(opts, strings.Split(argv[i], ",")...)
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, strings.Split(a[2:], ",")...)
		case a == "-f":
			fake = true
		case a == "-n", a == "-s", a == "-v", a == "-r", a == "-w":
			if a == "-r" {
				opts = append(opts, "ro")
			}
		case strings.HasPrefix(a, "-t"): // some callers repeat the type
			if a == "-t" {
				i++
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			return nil, false, fmt.Errorf("unknown argument %s", a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, false, fmt.Errorf("usage: %s SOURCE MOUNTPOINT [-o OPTIONS]", helperName)
	}
	source, dir := pos[0], pos[1]
	args = []string{"--daemon"}
	if source != "" && source != "vspherefs" && source != "none" {
		if strings.Contains(source, "@") {
			return nil, false, fmt.Errorf("SOURCE %s holds a login: put it in credentials=FILE", redactSource(source))
		}
		args = append(args, "--url", source)
	}
	for _, o := range opts {
		if o == "" {
			continue
		}
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case secretOptions[k]:
			return nil, false, fmt.Errorf("-o %s: no secret on the command line; put it in credentials=FILE", k)
		case valueOptions[k] != "":
			if !hasValue || v == "" {
				return nil, false, fmt.Errorf("-o %s needs a value (%s=…)", k, k)
			}
			args = append(args, "--"+valueOptions[k], v)
		case boolOptions[k] != "":
			if hasValue {
				return nil, false, fmt.Errorf("-o %s takes no value", k)
			}
			args = append(args, "--"+boolOptions[k])
		case ignoredOptions[k], strings.HasPrefix(k, "x-"), k == "comment", k == "fsname", k == "subtype":
		default:
			return nil, false, fmt.Errorf("-o %s: unknown option", k)
		}
	}
	return append(args, dir), fake, nil
}

// redactSource shows a SOURCE without what precedes its "@".
func redactSource(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "…" + s[i:]
	}
	return s
}

// runHelper is the binary called as mount.fuse.vspherefs.
func runHelper(argv []string) error {
	args, fake, err := helperArgs(argv)
	if err != nil {
		return err
	}
	if fake {
		return nil
	}
	return mountCommand(args)
}
