package sim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// DefaultGuestLogin is what the simulated guests accept unless told otherwise.
var DefaultGuestLogin = url.UserPassword("root", "vmware")

// Guest is the guest side of every simulated VM: vcsim fakes guest file
// operations without docker, so each VM gets a directory-backed guest here,
// reached through our GuestFileManager (guestfm.go) and transfer URLs
// (guesturl.go). Tests steer it with the setters below and read Stats.
type Guest struct {
	reg   *simulator.Registry
	home  string // <vcsim home>/guest: one directory per VM, by moref
	login *url.Userinfo

	clock    atomic.Int64 // offset added to time.Now for URL expiry, ns
	rate     atomic.Int64 // transfer bytes per second per stream; 0: unlimited
	failPut  atomic.Int64 // the next PUT fails after this many bytes; -1: none
	failPuts atomic.Int64 // every PUT fails after this many bytes; -1: none
	pageSize atomic.Int32 // most entries ListFilesInGuest returns per call
	puts     putFaults    // queued PUT faults (guesturl.go)

	mu      sync.Mutex
	vms     map[types.ManagedObjectReference]*guestVM
	tickets map[string]*ticket
	stats   GuestStats
}

// guestVM is one VM's guest: its files, and an epoch that each power-off
// bumps, which kills every transfer URL issued before it.
type guestVM struct {
	fs    *guestFS
	epoch atomic.Int64
}

// GuestStats counts what clients asked of the guests.
type GuestStats struct {
	Calls     map[string]int // GuestFileManager calls by method name
	FromGuest map[string]int // successful InitiateFileTransferFromGuest by guest path
	Gets      int            // GETs that started a body
	GetBytes  int64          // body bytes sent
	Puts      int            // PUTs that replaced a file
	Refused   int            // GETs and PUTs refused: unknown, used, busy, expired
}

func newGuest(reg *simulator.Registry, home string, login *url.Userinfo) *Guest {
	if login == nil {
		login = DefaultGuestLogin
	}
	g := &Guest{
		reg:     reg,
		home:    filepath.Join(home, "guest"),
		login:   login,
		vms:     map[types.ManagedObjectReference]*guestVM{},
		tickets: map[string]*ticket{},
		stats:   GuestStats{Calls: map[string]int{}, FromGuest: map[string]int{}},
	}
	g.failPut.Store(-1)
	g.failPuts.Store(-1)
	g.pageSize.Store(100)
	return g
}

// Advance moves the guests' clock (used only for URL expiry) forward by d.
func (g *Guest) Advance(d time.Duration) { g.clock.Add(int64(d)) }

// SetRate limits each transfer stream to n bytes per second (0: unlimited),
// for tests of slow reads.
func (g *Guest) SetRate(n int64) { g.rate.Store(n) }

// FailNextPut makes the next PUT fail after n body bytes, as a dropped
// connection would; the file it was replacing must stay as it was.
func (g *Guest) FailNextPut(n int64) { g.failPut.Store(n) }

// FailPutsAfter makes every PUT fail after n body bytes (-1: none), so that
// a commit fails whatever its retries do.
func (g *Guest) FailPutsAfter(n int64) { g.failPuts.Store(n) }

// SetPageSize sets the most entries one ListFilesInGuest call returns.
func (g *Guest) SetPageSize(n int) { g.pageSize.Store(int32(n)) }

// Stats returns a copy of the counters.
func (g *Guest) Stats() GuestStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stats
	s.Calls = clone(g.stats.Calls)
	s.FromGuest = clone(g.stats.FromGuest)
	return s
}

func clone(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (g *Guest) now() time.Time { return time.Now().Add(time.Duration(g.clock.Load())) }

func (g *Guest) count(f func(*GuestStats)) {
	g.mu.Lock()
	f(&g.stats)
	g.mu.Unlock()
}

// Dir is the host directory holding the guest "/" of a VM (for tests that
// look behind the API), created with its demo tree if new. A Windows
// guest's drives are its folders C, D….
func (g *Guest) Dir(vm *simulator.VirtualMachine) (string, error) {
	var name string
	var windows bool
	g.reg.WithLock(&simulator.Context{Map: g.reg}, vm, func() { name, windows = vm.Name, isWindows(vm) })
	if _, err := g.vm(vm.Self, name, windows); err != nil {
		return "", err
	}
	return filepath.Join(g.home, vm.Self.Value, "fs"), nil
}

// isWindows says whether a VM's guest is Windows, as its guestId says
// (called with the VM locked).
func isWindows(vm *simulator.VirtualMachine) bool {
	return vm.Config != nil && strings.HasPrefix(vm.Config.GuestId, "win") ||
		vm.Guest != nil && vm.Guest.GuestFamily == string(types.VirtualMachineGuestOsFamilyWindowsGuest)
}

// vm returns the guest of a VM, creating it (with the Linux-like or Windows
// demo tree, named for the VM) the first time the VM is used.
func (g *Guest) vm(ref types.ManagedObjectReference, name string, windows bool) (*guestVM, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.vms[ref]; ok {
		return v, nil
	}
	dir := filepath.Join(g.home, ref.Value)
	_, statErr := os.Stat(dir)
	gfs, err := openGuestFS(dir, windows)
	if err != nil {
		return nil, err
	}
	if os.IsNotExist(statErr) {
		populate := populateGuest
		if windows {
			populate = populateWindowsGuest
		}
		if err := populate(gfs, name); err != nil {
			return nil, fmt.Errorf("guest tree for %s: %w", ref.Value, err)
		}
	}
	v := &guestVM{fs: gfs}
	g.vms[ref] = v
	return v, nil
}

// Reference, PutObject, UpdateObject and RemoveObject make Guest a vcsim
// registry handler: it learns of power-offs and removals as they happen.
func (g *Guest) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VspherefsGuest", Value: "guest"}
}

func (g *Guest) PutObject(*simulator.Context, mo.Reference) {}

func (g *Guest) UpdateObject(_ *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	if _, ok := obj.(*mo.VirtualMachine); !ok {
		if _, ok := obj.(*simulator.VirtualMachine); !ok {
			return
		}
	}
	for _, c := range changes {
		if c.Name == "runtime.powerState" && fmt.Sprint(c.Val) != string(types.VirtualMachinePowerStatePoweredOn) {
			g.invalidate(obj.Reference())
		}
	}
}

func (g *Guest) RemoveObject(_ *simulator.Context, ref types.ManagedObjectReference) {
	if ref.Type == "VirtualMachine" {
		g.invalidate(ref)
	}
}

// invalidate ends every URL of a VM and aborts its transfers in flight, as
// the API says a power-off, suspend or unregister does. (It runs with the
// VM locked by vcsim, so it must not call anything that locks the VM.)
func (g *Guest) invalidate(ref types.ManagedObjectReference) {
	g.mu.Lock()
	v := g.vms[ref]
	g.mu.Unlock()
	if v != nil {
		v.epoch.Add(1)
	}
}

// prepare is the check every guest operation starts with: the VM exists, is
// powered on, and the guest accepts the login.
func (g *Guest) prepare(ctx *simulator.Context, ref types.ManagedObjectReference, auth types.BaseGuestAuthentication) (*guestVM, types.BaseMethodFault) {
	vm, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return nil, &types.ManagedObjectNotFound{Obj: ref}
	}
	var state types.VirtualMachinePowerState
	var name string
	var windows bool
	ctx.WithLock(vm, func() { state, name, windows = vm.Runtime.PowerState, vm.Name, isWindows(vm) })
	if state != types.VirtualMachinePowerStatePoweredOn {
		return nil, &types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOn,
			ExistingState:  state,
		}
	}
	creds, ok := auth.(*types.NamePasswordAuthentication)
	pass, _ := g.login.Password()
	if !ok || creds.Username != g.login.Username() || creds.Password != pass {
		return nil, new(types.InvalidGuestLogin)
	}
	v, err := g.vm(ref, name, windows)
	if err != nil {
		return nil, &types.GuestOperationsUnavailable{}
	}
	return v, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startGuest installs the guests: our GuestFileManager in place of vcsim's,
// the transfer URL handler, and the hosts' thumbprints that clients pin for
// those URLs. Called from Start once the server (and its certificate) exists.
func (s *Server) startGuest(opts Options) error {
	reg := s.model.Map()
	home := ""
	for _, o := range reg.OptionManager().Setting {
		if v := o.GetOptionValue(); v.Key == "vcsim.home" {
			home, _ = v.Value.(string)
		}
	}
	if home == "" {
		return fmt.Errorf("vcsim home directory not found")
	}
	s.Guest = newGuest(reg, home, opts.GuestLogin)
	fms := reg.AllReference("GuestFileManager")
	if len(fms) != 1 {
		return fmt.Errorf("want one GuestFileManager, found %d", len(fms))
	}
	reg.Put(&guestFileManager{GuestFileManager: fms[0].(*simulator.GuestFileManager), g: s.Guest})
	reg.AddHandler(s.Guest)
	s.mux.Handle(guestPath, s.Faults.Wrap(s.Guest))
	s.pinHostThumbprints()
	return nil
}

// close releases the guests' open directories.
func (g *Guest) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, v := range g.vms {
		v.fs.root.Close()
	}
}

// GuestLoginString is DefaultGuestLogin as USER:PASS (url.Userinfo.String
// would percent-escape it).
func GuestLoginString() string {
	p, _ := DefaultGuestLogin.Password()
	return DefaultGuestLogin.Username() + ":" + p
}
