// Package status is what a mount tells `vspherefs status`: the transfers in
// flight, commits, held and recovery files, sessions, cache use and API call
// counts, served as JSON on a unix socket in the mount's own cache folder.
package status

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Snapshot is one answer of the status socket (and `status --json`).
type Snapshot struct {
	PID        int       `json:"pid"`
	Mountpoint string    `json:"mountpoint"`
	Server     string    `json:"server"`
	CacheDir   string    `json:"cache_dir"`
	Started    time.Time `json:"started"`
	Version    string    `json:"version"`

	Transfers []Transfer `json:"transfers"`

	Commits  int64      `json:"commits"`  // library commits running or queued
	Held     []HeldFile `json:"held"`     // staged library files not committed yet (open, queued, rsync temporaries, OVF holds)
	Recovery []string   `json:"recovery"` // files under recovery/ (bytes of failed commits)

	Sessions map[string]int64 `json:"sessions"` // download sessions, update sessions, leases held

	CacheBytes      int64 `json:"cache_bytes"`       // block cache in memory
	CacheLimitBytes int64 `json:"cache_limit_bytes"` // --cache-size
	SpoolBytes      int64 `json:"spool_bytes"`       // disk used by spools and staging

	Calls  map[string]int64 `json:"api_calls"`  // API calls since mount, by method
	Faults map[string]int64 `json:"api_faults"` // failed calls since mount, by fault
}

// HeldFile is a staged file not committed yet.
type HeldFile struct {
	Path  string `json:"path"`
	State string `json:"state"`
}

// Transfer is one transfer in flight (or a step of one that moves no bytes:
// a library file's prepare, a commit, an export's lease).
type Transfer struct {
	ID   int64  `json:"id"`
	Kind string `json:"kind"` // library prepare, library download, library upload, library commit, guest download, guest upload, export lease, export disk download
	// Path is the path in the mount it is for (libraries/lib/item/file,
	// vms/vm/etc/hostname, exports/vm/vm-disk-0.vmdk), or the URL path
	// when that is not known.
	Path    string    `json:"path"`
	Host    string    `json:"host,omitempty"`
	URLPath string    `json:"url_path,omitempty"` // never its query (tokens)
	State   string    `json:"state"`
	Done    int64     `json:"bytes_done"`
	Total   int64     `json:"bytes_total"` // -1: unknown
	Rate    float64   `json:"rate_bytes_per_second"`
	ETA     float64   `json:"eta_seconds,omitempty"`
	Started time.Time `json:"started"`
}

// Tracker keeps the transfers in flight.
type Tracker struct {
	mu   sync.Mutex
	next int64
	live map[int64]*Live
}

// Live is one tracked transfer; its methods may be called from any goroutine.
type Live struct {
	t       *Tracker
	id      int64
	kind    string
	host    string
	path    string // in the mount, or the URL path
	urlPath string
	started time.Time
	total   atomic.Int64
	done    atomic.Int64
	state   atomic.Value // string
}

// Begin starts tracking a transfer of total bytes (-1: unknown), shown by
// its URL path.
func (t *Tracker) Begin(kind, host, urlPath, state string, total int64) *Live {
	return t.BeginAt(urlPath, kind, host, urlPath, state, total)
}

// BeginAt starts tracking a transfer (or a step) for path in the mount
// ("": shown by its URL path); host and urlPath may be "".
func (t *Tracker) BeginAt(path, kind, host, urlPath, state string, total int64) *Live {
	if path == "" {
		path = urlPath
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live == nil {
		t.live = map[int64]*Live{}
	}
	t.next++
	l := &Live{t: t, id: t.next, kind: kind, host: host, path: path, urlPath: urlPath, started: time.Now()}
	l.total.Store(total)
	l.state.Store(state)
	t.live[l.id] = l
	return l
}

// Add counts n more bytes.
func (l *Live) Add(n int64) { l.done.Add(n) }

// SetState changes what the transfer is doing (nil: nothing is tracked).
func (l *Live) SetState(s string) {
	if l != nil {
		l.state.Store(s)
	}
}

// SetTotal sets the expected size once known.
func (l *Live) SetTotal(n int64) { l.total.Store(n) }

// Done is the bytes moved so far.
func (l *Live) Done() int64 { return l.done.Load() }

// End stops tracking it (nil: nothing is tracked).
func (l *Live) End() {
	if l == nil {
		return
	}
	l.t.mu.Lock()
	delete(l.t.live, l.id)
	l.t.mu.Unlock()
}

// Snapshot lists the transfers in flight, oldest first.
func (t *Tracker) Snapshot() []Transfer {
	t.mu.Lock()
	ls := make([]*Live, 0, len(t.live))
	for _, l := range t.live {
		ls = append(ls, l)
	}
	t.mu.Unlock()
	out := make([]Transfer, 0, len(ls))
	now := time.Now()
	for _, l := range ls {
		tr := Transfer{ID: l.id, Kind: l.kind, Host: l.host, Path: l.path, URLPath: l.urlPath, State: l.state.Load().(string),
			Done: l.done.Load(), Total: l.total.Load(), Started: l.started}
		if secs := now.Sub(l.started).Seconds(); secs > 0 {
			tr.Rate = float64(tr.Done) / secs
		}
		if tr.Rate > 0 && tr.Total > tr.Done {
			tr.ETA = float64(tr.Total-tr.Done) / tr.Rate
		}
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
