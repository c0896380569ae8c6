package fs

import (
	"context"

	"github.com/vspherefs/vspherefs/status"
)

// withOrigin says the requests made under ctx are for mountPath, which
// `vspherefs status` shows for their transfers.
func withOrigin(ctx context.Context, mountPath string) context.Context {
	return status.WithOrigin(ctx, mountPath)
}
