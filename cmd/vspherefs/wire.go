package main

import (
	"context"
	"io"
	"time"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/cache"
	"github.com/vspherefs/vspherefs/fs"
	"github.com/vspherefs/vspherefs/remote"
)

// The backend's clients return their own concrete types; these wrappers
// give fs the interfaces it declares (fs/sources.go) and nothing more.

type downloadsFS struct{ *backend.Downloads }

func (d downloadsFS) Source(item remote.Item, f remote.File, origin string) cache.Source {
	s := d.Downloads.Source(item, f)
	s.Origin = origin
	return s
}

type guestsFS struct{ *backend.Guests }

func (g guestsFS) VM(vm remote.VM) fs.Guest { return guestFS{g.Guests.VM(vm)} }

type guestFS struct{ *backend.GuestVM }

func (g guestFS) Source(p string, size int64, mtime time.Time, origin string) cache.Source {
	s := g.GuestVM.Source(p, size, mtime)
	s.Origin = origin
	return s
}

type libraryWriterFS struct{ *backend.LibraryWriter }

func (w libraryWriterFS) StartStream(ctx context.Context, itemID, name string) (fs.Stream, error) {
	s, err := w.LibraryWriter.StartStream(ctx, itemID, name)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s, nil
}

func openDiskImage(r io.ReaderAt, size int64) (fs.DiskImage, error) {
	img, err := backend.OpenStreamImage(r, size)
	if err != nil {
		return nil, err
	}
	return img, nil
}
