package status

import "context"

type originKey struct{}

// WithOrigin says that the requests made under ctx are for mountPath, the
// path in the mount (libraries/lib/item/file, vms/vm/etc/hostname…) that
// `vspherefs status` shows for their transfers. An empty mountPath leaves
// ctx as it is.
func WithOrigin(ctx context.Context, mountPath string) context.Context {
	if mountPath == "" {
		return ctx
	}
	return context.WithValue(ctx, originKey{}, mountPath)
}

// Origin is the mount path WithOrigin attached to ctx, or "".
func Origin(ctx context.Context) string {
	s, _ := ctx.Value(originKey{}).(string)
	return s
}
