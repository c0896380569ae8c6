package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

func setChecksums(ctx context.Context, c soap.RoundTripper, lease *nfc.Lease, kv ...types.KeyValue) error {
	_, err := methods.HttpNfcLeaseSetManifestChecksumType(ctx, c, &types.HttpNfcLeaseSetManifestChecksumType{This: lease.Reference(), DeviceUrlsToChecksumTypes: kv})
	return err
}

// SetManifestChecksumType (seed 003) as a 6.7+ server takes it, refused
// with bad arguments and after a transfer started; and as older servers
// (no such method) and a server that ignores it behave.
func TestExportManifestChecksumType(t *testing.T) {
	s, c, vm := startVM(t, "DC0_H0_VM0", true)
	ctx := context.Background()
	for _, mode := range []ManifestChecksums{ChecksumsAsked, ChecksumsUnknown, ChecksumsIgnored} {
		s.Exports.SetManifestChecksums(mode)
		lease, err := vm.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		info, err := lease.Wait(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		item := info.Items[0]
		sha256kv := types.KeyValue{Key: item.DeviceId, Value: "sha256"}
		if mode == ChecksumsAsked {
			if err := setChecksums(ctx, c.Client, lease, types.KeyValue{Key: "/nope", Value: "sha256"}); !isFault[*types.InvalidArgument](err) {
				t.Fatalf("unknown key: %v", err)
			}
			if err := setChecksums(ctx, c.Client, lease, types.KeyValue{Key: item.DeviceId, Value: "md5"}); !isFault[*types.InvalidArgument](err) {
				t.Fatalf("unknown type: %v", err)
			}
		}
		err = setChecksums(ctx, c.Client, lease, sha256kv)
		if mode == ChecksumsUnknown {
			if !isFault[*types.MethodNotFound](err) {
				t.Fatalf("mode %d: %v", mode, err)
			}
		} else if err != nil {
			t.Fatalf("mode %d: %v", mode, err)
		}
		p, sum1 := downloadItem(t, c, item, t.TempDir())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if mode == ChecksumsAsked {
			if err := setChecksums(ctx, c.Client, lease, sha256kv); !isFault[*types.InvalidState](err) {
				t.Fatalf("after a transfer: %v", err)
			}
		}
		m, err := lease.GetManifest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e := m[0]
		if mode == ChecksumsAsked {
			if e.ChecksumType != "sha256" || e.Checksum != hex.EncodeToString(sum[:]) || e.Sha1 != "" {
				t.Fatalf("asked for sha256: %+v", e)
			}
		} else if e.ChecksumType != "sha1" || e.Checksum != sum1 || e.Sha1 != sum1 {
			t.Fatalf("mode %d: %+v", mode, e)
		}
		if err := lease.Complete(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
