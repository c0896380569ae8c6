package sim

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vspherefs/vspherefs/vmdk"
)

// Disks holds the content of every VM's virtual disks: a RawDisk generated
// from the VM's id and the disk's device key (so VMs created through the API
// get one too), and the streamOptimized VMDK an export lease serves for it,
// written once to a file when a lease first needs it.
type Disks struct {
	s   *Server
	dir string

	mu sync.Mutex
	m  map[diskID]*diskStream
}

type diskID struct {
	vm       string
	key      int32
	capacity int64 // a disk that grows gets a new stream
}

// diskStream is one generated VMDK.
type diskStream struct {
	once   sync.Once
	raw    *RawDisk
	path   string
	size   int64
	sha1   string // hex, as HttpNfcLeaseGetManifest gives it
	sha256 string // the same, once a client asked for SHA-256 (SetManifestChecksumType)
	err    error
}

func newDisks(s *Server) (*Disks, error) {
	dir, err := os.MkdirTemp("", "vspherefs-sim-disks-")
	if err != nil {
		return nil, err
	}
	return &Disks{s: s, dir: dir, m: map[diskID]*diskStream{}}, nil
}

func (d *Disks) close() { _ = os.RemoveAll(d.dir) }

// Raw is the raw content of disk key of vm, as the simulator has it now.
func (d *Disks) Raw(vm types.ManagedObjectReference, key int32) (*RawDisk, error) {
	ctx := d.s.bgContext()
	obj, ok := ctx.Map.Get(vm).(*simulator.VirtualMachine)
	if !ok {
		return nil, fmt.Errorf("no VM %s", vm)
	}
	var capacity int64 = -1
	ctx.WithLock(obj, func() {
		for _, disk := range vmDisks(vm.Value, obj.Config.Hardware.Device) {
			if disk.key == key {
				capacity = disk.capacity
			}
		}
	})
	if capacity < 0 {
		return nil, fmt.Errorf("no disk %d on %s", key, vm)
	}
	return NewRawDisk(vm.Value, key, capacity), nil
}

// stream returns the VMDK of a disk, generating it on first use.
func (d *Disks) stream(vm string, disk vmDisk) (*diskStream, error) {
	id := diskID{vm, disk.key, disk.capacity}
	d.mu.Lock()
	st, ok := d.m[id]
	if !ok {
		st = &diskStream{raw: NewRawDisk(vm, disk.key, disk.capacity)}
		d.m[id] = st
	}
	d.mu.Unlock()
	st.once.Do(func() {
		st.path = filepath.Join(d.dir, fmt.Sprintf("%s-%d-%d.vmdk", vm, disk.key, disk.capacity))
		st.size, st.sha1, st.sha256, st.err = writeStreamFile(st.path, st.raw)
	})
	return st, st.err
}

func writeStreamFile(path string, raw *RawDisk) (int64, string, string, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, "", "", err
	}
	defer f.Close()
	h1, h256 := sha1.New(), sha256.New()
	seed := sha1.Sum([]byte(raw.label))
	n, err := vmdk.WriteStreamOptimized(io.MultiWriter(f, h1, h256), raw, "disk.vmdk", binary.LittleEndian.Uint32(seed[:]))
	if err == nil {
		err = f.Close()
	}
	return n, hex.EncodeToString(h1.Sum(nil)), hex.EncodeToString(h256.Sum(nil)), err
}

// vmDisk is a virtual disk as an export lease presents it.
type vmDisk struct {
	key       int32
	capacity  int64
	deviceKey string // HttpNfcLeaseDeviceUrl.key: "/vm-1/VirtualLsiLogicController0:0"
}

// vmDisks lists the disks among a VM's devices, in device order.
func vmDisks(vm string, devices []types.BaseVirtualDevice) []vmDisk {
	list := object.VirtualDeviceList(devices)
	var disks []vmDisk
	for _, dev := range list.SelectByType((*types.VirtualDisk)(nil)) {
		disk := dev.(*types.VirtualDisk)
		capacity := disk.CapacityInBytes
		if capacity == 0 {
			capacity = disk.CapacityInKB * 1024
		}
		ctrl := "VirtualController"
		bus := int32(0)
		if c := list.FindByKey(disk.ControllerKey); c != nil {
			ctrl = fmt.Sprintf("%T", c)[len("*types."):]
			if bc, ok := c.(types.BaseVirtualController); ok {
				bus = bc.GetVirtualController().BusNumber
			}
		}
		unit := int32(0)
		if disk.UnitNumber != nil {
			unit = *disk.UnitNumber
		}
		disks = append(disks, vmDisk{key: disk.Key, capacity: capacity, deviceKey: fmt.Sprintf("/%s/%s%d:%d", vm, ctrl, bus, unit)})
	}
	return disks
}

// bgContext is a vcsim context for work outside a SOAP call (timers, the NFC
// data path): its own identity, so vcsim's object locks exclude SOAP calls.
func (s *Server) bgContext() *simulator.Context {
	return &simulator.Context{Context: context.Background(), Map: s.model.Map()}
}
