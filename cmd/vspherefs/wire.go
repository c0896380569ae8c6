package main

import (
	"context"
	"io"
	"time"

	"github.com/vspherefs/vspherefs/backend/guest"
	"github.com/vspherefs/vspherefs/backend/library"
	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/fs"
	"github.com/vspherefs/vspherefs/remote"
	"github.com/vspherefs/vspherefs/vmdk"
)

// The backend's clients return their own concrete types; these wrappers
// give fs the interfaces it declares (fs/sources.go) and nothing more.

type downloadsFS struct{ *library.Downloads }

func (d downloadsFS) Source(item remote.Item, f remote.File, origin string) cache.Source {
	s := d.Downloads.Source(item, f)
	s.Origin = origin
	return s
}

type guestsFS struct{ *guest.Guests }

func (g guestsFS) VM(vm remote.VM) fs.Guest { return guestFS{g.Guests.VM(vm)} }

type guestFS struct{ *guest.GuestVM }

func (g guestFS) Source(p string, size int64, mtime time.Time, origin string) cache.Source {
	s := g.GuestVM.Source(p, size, mtime)
	s.Origin = origin
	return s
}

type libraryWriterFS struct{ *library.LibraryWriter }

func (w libraryWriterFS) StartStream(ctx context.Context, itemID, name string, body io.Reader) (fs.Stream, error) {
	s, err := w.LibraryWriter.StartStream(ctx, itemID, name, body)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s, nil
}

func openDiskImage(r io.ReaderAt, size int64) (fs.DiskImage, error) {
	img, err := vmdk.OpenStreamImage(r, size)
	if err != nil {
		return nil, err
	}
	return img, nil
}
