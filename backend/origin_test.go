package backend

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/status"
)

// stepObserver lists steps in a tracker.
type stepObserver struct{ tr *status.Tracker }

func (stepObserver) Call(string, time.Duration, error)                {}
func (stepObserver) Transport(rt http.RoundTripper) http.RoundTripper { return rt }
func (o stepObserver) Step(kind, path, state string) *status.Live {
	return o.tr.BeginAt(path, kind, "", "", state, -1)
}

// A step is listed for the mount path its context carries, else for what
// the call is on; without a step observer it is nil, and ending it is safe.
func TestStepOrigin(t *testing.T) {
	var tr status.Tracker
	c := &Conn{Config: Config{Observer: stepObserver{&tr}}}
	ctx := status.WithOrigin(context.Background(), "libraries/l/i/f")
	a := c.Step(ctx, "library prepare", "i/f", "preparing")
	b := c.Step(context.Background(), "library commit", "item-id", "committing")
	ts := tr.Snapshot()
	if len(ts) != 2 || ts[0].Path != "libraries/l/i/f" || ts[1].Path != "item-id" || ts[1].State != "committing" {
		t.Errorf("steps: %+v", ts)
	}
	a.End()
	b.End()
	none := (&Conn{}).Step(ctx, "library prepare", "i/f", "preparing")
	none.SetState("x")
	none.End()
}
