package nfc

import (
	"context"
	"crypto/sha1"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/remote"
)

// Each spooled disk is checked against the lease's manifest
// (HttpNfcLeaseGetManifest), which gives a checksum of what the host sent.
// The .mf needs each disk's SHA-256 anyway, so the lease is asked for
// SHA-256 checksums too (HttpNfcLeaseSetManifestChecksumType, vSphere API
// 6.7, before any transfer): each disk is then hashed once, as govc hashes
// it. A server without that method is checked by SHA-1, hashed alongside;
// one that takes the call but still gives SHA-1 has the spooled file hashed
// again, from local disk.

// diskSums are a spooled disk's checksums, hex; sha1 is empty unless the
// manifest was expected to give SHA-1.
type diskSums struct{ sha1, sha256 string }

// askSHA256 asks for SHA-256 manifest checksums; want1 says the disks must
// be hashed with SHA-1 as well. Only the caller's own end (ctx) is an error:
// any refusal of the server's just means SHA-1.
func askSHA256(ctx context.Context, c *vim25.Client, lease *nfc.Lease, items []nfc.FileItem, stall time.Duration) (want1 bool, err error) {
	req := types.HttpNfcLeaseSetManifestChecksumType{This: lease.Reference()}
	for _, item := range items {
		req.DeviceUrlsToChecksumTypes = append(req.DeviceUrlsToChecksumTypes, types.KeyValue{
			Key: item.DeviceId, Value: string(types.HttpNfcLeaseManifestEntryChecksumTypeSha256)})
	}
	if len(req.DeviceUrlsToChecksumTypes) == 0 {
		return false, nil
	}
	cctx, cancel := callContext(ctx, stall)
	defer cancel()
	if _, err := methods.HttpNfcLeaseSetManifestChecksumType(cctx, c, &req); err != nil {
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
		return true, nil
	}
	return false, nil
}

// checkManifest compares spooled disks with HttpNfcLeaseGetManifest, once
// every disk is transferred: the disks that checkDisk could not check.
func checkManifest(ctx context.Context, lease *nfc.Lease, files []remote.ExportedFile, sums map[string]diskSums, on string) error {
	entries, err := lease.GetManifest(ctx)
	if err != nil {
		return backend.VimError("HttpNfcLeaseGetManifest", on, err)
	}
	for _, f := range files {
		e := manifestEntry(entries, f.Disk.DeviceKey)
		if e == nil {
			return remote.Errorf("HttpNfcLeaseGetManifest", on, remote.ErrIO, "%s: not in the lease's manifest", f.Name)
		}
		if err := matchEntry(e, f, sums[f.Disk.DeviceKey], on); err != nil {
			return err
		}
	}
	return nil
}

// checkDisk compares one disk, just spooled, with its entry in the lease's
// manifest while the lease goes on for the others. The seed does not say
// when a lease's manifest is complete: an entry that is not there yet (or
// has no checksum), or a GetManifest that fails, only means the disk is
// checked with the others at the end (false, nil). A mismatch fails the
// export.
func checkDisk(ctx context.Context, lease *nfc.Lease, f remote.ExportedFile, sums diskSums, on string) (bool, error) {
	entries, err := lease.GetManifest(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, nil
	}
	e := manifestEntry(entries, f.Disk.DeviceKey)
	if e == nil {
		return false, nil
	}
	if kind, _ := entrySum(e); kind == "" {
		return false, nil
	}
	if err := matchEntry(e, f, sums, on); err != nil {
		return false, err
	}
	return true, nil
}

func manifestEntry(entries []types.HttpNfcLeaseManifestEntry, key string) *types.HttpNfcLeaseManifestEntry {
	for i := range entries {
		if entries[i].Key == key {
			return &entries[i]
		}
	}
	return nil
}

// entrySum is the checksum an entry gives, and its kind: SHA256 where
// checksumType says so, else SHA1 (sha1, or checksum without a type, as
// before 6.7); "" when it gives none.
func entrySum(e *types.HttpNfcLeaseManifestEntry) (kind, sum string) {
	switch t := types.HttpNfcLeaseManifestEntryChecksumType(e.ChecksumType); {
	case t == types.HttpNfcLeaseManifestEntryChecksumTypeSha256 && e.Checksum != "":
		return "SHA256", e.Checksum
	case e.Sha1 != "":
		return "SHA1", e.Sha1
	case (t == "" || t == types.HttpNfcLeaseManifestEntryChecksumTypeSha1) && e.Checksum != "":
		return "SHA1", e.Checksum
	}
	return "", ""
}

func matchEntry(e *types.HttpNfcLeaseManifestEntry, f remote.ExportedFile, sums diskSums, on string) error {
	kind, want := entrySum(e)
	have := sums.sha256
	if kind == "SHA1" {
		if have = sums.sha1; have == "" {
			// Asked for SHA-256, the server gave SHA-1 after all.
			sum, err := fileSHA1(f.Path)
			if err != nil {
				return backend.NewError("HttpNfcLeaseGetManifest", on, remote.ErrIO, err)
			}
			have = sum
		}
	}
	if kind == "" || !strings.EqualFold(want, have) || (e.Size > 0 && e.Size != f.Size) {
		return remote.Errorf("HttpNfcLeaseGetManifest", on, remote.ErrIO,
			"%s: spooled %d bytes with %s %s, the server says %d bytes with %s %q", f.Name, f.Size, kindOr(kind), have, e.Size, kindOr(kind), want)
	}
	return nil
}

func kindOr(kind string) string {
	if kind == "" {
		return "checksum"
	}
	return kind
}

func fileSHA1(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return backend.HexSum(h), nil
}
