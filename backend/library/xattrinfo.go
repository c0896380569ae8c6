package library

import (
	"strings"

	"github.com/vmware/govmomi/vapi/library"
)

// checksumOf is a library file's checksum as the server gives it, "ALGORITHM:hex".
func checksumOf(f library.File) string {
	if f.Checksum == nil || f.Checksum.Checksum == "" {
		return ""
	}
	alg := strings.ToUpper(f.Checksum.Algorithm)
	if alg == "" {
		alg = "SHA1" // the API's default
	}
	return alg + ":" + strings.ToLower(f.Checksum.Checksum)
}
