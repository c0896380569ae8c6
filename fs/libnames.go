package fs

// Names in libraries/ that get special treatment: names the server cannot
// take (refused at create, never after bytes were accepted), editor scratch
// files that never reach the library, and temporary names whose commit waits
// for their rename.

import (
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// maxName is the longest name, in bytes, a library, item or file may have
// (NAME_MAX; statfs says so too).
const maxName = 255

// libNameErrno checks a library's or item's name (as shown in the mount)
// that is about to be created: EINVAL for a name the name rule would not
// show back, ENAMETOOLONG over 255 bytes (as shown, or as the server has
// it). vCenter takes any other name for them, "/" included ("a%2Fb").
func libNameErrno(shown string) syscall.Errno {
	if errno := checkNewName(shown); errno != 0 {
		return errno
	}
	if len(shown) > maxName || len(DecodeName(shown)) > maxName {
		return syscall.ENAMETOOLONG
	}
	return 0
}

// fileNameErrno checks a library file's name as libNameErrno does, and
// gives EINVAL for what the library API refuses in file names, which become
// paths on the datastore: no "/" or "\", no "..", not empty, not ".".
func fileNameErrno(shown string) syscall.Errno {
	if errno := libNameErrno(shown); errno != 0 {
		return errno
	}
	n := DecodeName(shown)
	if n == "" || n == "." || strings.ContainsAny(n, "/\\") || strings.Contains(n, "..") {
		return syscall.EINVAL
	}
	return 0
}

// guestNameErrno is the same length check for names created in a guest.
func guestNameErrno(name string) syscall.Errno {
	if len(name) > maxName {
		return syscall.ENAMETOOLONG
	}
	return 0
}

// localOnlyPatterns are editor swap, backup, lock and probe files: they
// live in the mount (visible while they exist, gone on unlink or at
// unmount) and are never committed to the library.
var localOnlyPatterns = []*regexp.Regexp{
	regexp.MustCompile(`^\..+\.sw[a-p]$`),     // vim swap files .NAME.swp, .swo, ... (and .swx, vim's probe)
	regexp.MustCompile(`^\..+\.swx$`),         // vim's swap probe
	regexp.MustCompile(`^.+~$`),               // backups: vim, emacs, nano
	regexp.MustCompile(`^\.#.+$`),             // emacs lock files
	regexp.MustCompile(`^#.+#$`),              // emacs auto-save files
	regexp.MustCompile(`^\..+\.kate-swp$`),    // kate
	regexp.MustCompile(`^\.goutputstream-.+`), // GTK (gedit) atomic saves before their rename
}

// isLocalOnly says whether a file name is editor scratch (see
// localOnlyPatterns), or vim's "can I create a file here" probe 4913 (then
// 5036, 5159, ... while those exist).
func isLocalOnly(name string) bool {
	if n, err := strconv.Atoi(name); err == nil && n >= 4913 && n < 4913+123*100 && (n-4913)%123 == 0 && strconv.Itoa(n) == name {
		return true
	}
	for _, re := range localOnlyPatterns {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// heldPatterns are temporary names that tools write, close and then rename
// over the real name: rsync (.NAME.XXXXXX), sed -i (sedXXXXXX), Python's
// tempfile (tmpXXXXXXXX) and mktemp (tmp.XXXXXXXXXX). A closed file with
// such a name waits for its rename and is committed once, under the final
// name (or under its own after Writes.HoldTimeout).
var heldPatterns = []*regexp.Regexp{
	regexp.MustCompile(`^\..+\.[A-Za-z0-9]{6}$`),
	regexp.MustCompile(`^sed[A-Za-z0-9]{6}$`),
	regexp.MustCompile(`^tmp[a-z0-9_]{8}$`),
	regexp.MustCompile(`^tmp\.[A-Za-z0-9]{10}$`),
}

// isHeldTemp says whether a closed file of that name waits for its rename.
func isHeldTemp(name string) bool {
	if isLocalOnly(name) {
		return false
	}
	for _, re := range heldPatterns {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}
