package backend

import (
	"context"
	"sync"
	"time"

	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"

	"github.com/vspherefs/vspherefs/remote"
)

// Spaces answers statfs from the datastores' summaries: one call lists
// them all, and its answer is kept for a while (df is often repeated).
type Spaces struct {
	c   VimConn
	ttl time.Duration

	mu    sync.Mutex // guards the fields below; never held across a call
	at    time.Time
	byID  map[string]remote.Space
	total remote.Space
}

// NewSpaces makes the statfs source; figures are at most ttl old (10 s at least).
func NewSpaces(c VimConn, ttl time.Duration) *Spaces {
	return &Spaces{c: c, ttl: max(ttl, 10*time.Second)}
}

func (s *Spaces) refresh(ctx context.Context) error {
	s.mu.Lock()
	fresh := !s.at.IsZero() && time.Since(s.at) < s.ttl
	s.mu.Unlock()
	if fresh {
		return nil
	}
	var dss []mo.Datastore
	err := s.c.Do(ctx, "Datastore:summary", "", func(ctx context.Context) error {
		vc := s.c.Vim()
		v, err := view.NewManager(vc).CreateContainerView(ctx, vc.ServiceContent.RootFolder, []string{"Datastore"}, true)
		if err != nil {
			return err
		}
		defer v.Destroy(context.WithoutCancel(ctx))
		return v.Retrieve(ctx, []string{"Datastore"}, []string{"summary"}, &dss)
	})
	if err != nil {
		return err
	}
	byID := make(map[string]remote.Space, len(dss))
	var total remote.Space
	for _, ds := range dss {
		sp := remote.Space{Capacity: ds.Summary.Capacity, Free: ds.Summary.FreeSpace}
		byID[ds.Self.Value] = sp
		if ds.Summary.Accessible {
			total.Capacity += sp.Capacity
			total.Free += sp.Free
		}
	}
	s.mu.Lock()
	s.at, s.byID, s.total = time.Now(), byID, total
	s.mu.Unlock()
	return nil
}

// Total is the sum over the accessible datastores.
func (s *Spaces) Total(ctx context.Context) (remote.Space, error) {
	if err := s.refresh(ctx); err != nil {
		return remote.Space{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, nil
}

// Datastore is one datastore's figures, by managed object id.
func (s *Spaces) Datastore(ctx context.Context, id string) (remote.Space, error) {
	if err := s.refresh(ctx); err != nil {
		return remote.Space{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.byID[id]
	if !ok {
		return remote.Space{}, remote.Errorf("Datastore:summary", id, remote.ErrNotFound, "no such datastore")
	}
	return sp, nil
}

// VimConn is what PickDatastore needs of a connection (*Conn has it).
type VimConn interface {
	Do(ctx context.Context, call, on string, fn func(ctx context.Context) error) error
	Vim() *vim25.Client
}
