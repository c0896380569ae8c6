package sim

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// guestFileManager replaces vcsim's GuestFileManager singleton (which needs
// docker, and otherwise fakes success) with calls on the directory-backed
// guests of Guest. Its Lock/Unlock are no-ops: vcsim would otherwise
// serialise every call to the singleton, and the guests need no such lock.
type guestFileManager struct {
	*simulator.GuestFileManager
	g *Guest
}

func (*guestFileManager) Lock()   {}
func (*guestFileManager) Unlock() {}

// call runs the common checks, counts the call, and turns a fault into one
// of vcsim's SOAP fault bodies.
func (m *guestFileManager) call(ctx *simulator.Context, name string, vm types.ManagedObjectReference, auth types.BaseGuestAuthentication, f func(*guestVM) types.BaseMethodFault) *soap.Fault {
	m.g.count(func(s *GuestStats) { s.Calls[name]++ })
	v, fault := m.g.prepare(ctx, vm, auth)
	if fault == nil {
		fault = f(v)
	}
	if fault != nil {
		return simulator.Fault("", fault)
	}
	return nil
}

func (m *guestFileManager) InitiateFileTransferFromGuest(ctx *simulator.Context, req *types.InitiateFileTransferFromGuest) soap.HasFault {
	body := new(methods.InitiateFileTransferFromGuestBody)
	body.Fault_ = m.call(ctx, "InitiateFileTransferFromGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		fi, f := v.fs.regular(req.GuestFilePath)
		if f != nil {
			return f
		}
		info := v.fs.info(fi.Name(), req.GuestFilePath, fi)
		u := m.g.issue(&ticket{vm: v, path: req.GuestFilePath}, "https")
		body.Res = &types.InitiateFileTransferFromGuestResponse{Returnval: types.FileTransferInformation{
			Attributes: info.Attributes, Size: info.Size, Url: u,
		}}
		m.g.count(func(s *GuestStats) { s.FromGuest[req.GuestFilePath]++ })
		return nil
	})
	return body
}

func (m *guestFileManager) InitiateFileTransferToGuest(ctx *simulator.Context, req *types.InitiateFileTransferToGuest) soap.HasFault {
	body := new(methods.InitiateFileTransferToGuestBody)
	body.Fault_ = m.call(ctx, "InitiateFileTransferToGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		if req.FileSize < 0 {
			return &types.InvalidArgument{InvalidProperty: "fileSize"}
		}
		t := &ticket{vm: v, path: req.GuestFilePath, put: true, size: req.FileSize, overwrite: req.Overwrite, attr: req.FileAttributes}
		if f := m.g.putAllowed(t); f != nil {
			return f
		}
		body.Res = &types.InitiateFileTransferToGuestResponse{Returnval: m.g.issue(t, "https")}
		return nil
	})
	return body
}

func (m *guestFileManager) ListFilesInGuest(ctx *simulator.Context, req *types.ListFilesInGuest) soap.HasFault {
	body := new(methods.ListFilesInGuestBody)
	body.Fault_ = m.call(ctx, "ListFilesInGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		res, f := v.fs.list(req.FilePath, req.Index, req.MaxResults, req.MatchPattern, int(m.g.pageSize.Load()))
		if f == nil {
			body.Res = &types.ListFilesInGuestResponse{Returnval: *res}
		}
		return f
	})
	return body
}

func (m *guestFileManager) MakeDirectoryInGuest(ctx *simulator.Context, req *types.MakeDirectoryInGuest) soap.HasFault {
	body := new(methods.MakeDirectoryInGuestBody)
	body.Fault_ = m.call(ctx, "MakeDirectoryInGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		body.Res = new(types.MakeDirectoryInGuestResponse)
		return v.fs.mkdir(req.DirectoryPath, req.CreateParentDirectories)
	})
	return body
}

func (m *guestFileManager) DeleteFileInGuest(ctx *simulator.Context, req *types.DeleteFileInGuest) soap.HasFault {
	body := new(methods.DeleteFileInGuestBody)
	body.Fault_ = m.call(ctx, "DeleteFileInGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		body.Res = new(types.DeleteFileInGuestResponse)
		return v.fs.deleteFile(req.FilePath)
	})
	return body
}

func (m *guestFileManager) DeleteDirectoryInGuest(ctx *simulator.Context, req *types.DeleteDirectoryInGuest) soap.HasFault {
	body := new(methods.DeleteDirectoryInGuestBody)
	body.Fault_ = m.call(ctx, "DeleteDirectoryInGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		body.Res = new(types.DeleteDirectoryInGuestResponse)
		return v.fs.deleteDir(req.DirectoryPath, req.Recursive)
	})
	return body
}

func (m *guestFileManager) MoveFileInGuest(ctx *simulator.Context, req *types.MoveFileInGuest) soap.HasFault {
	body := new(methods.MoveFileInGuestBody)
	body.Fault_ = m.call(ctx, "MoveFileInGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		body.Res = new(types.MoveFileInGuestResponse)
		return v.fs.moveFile(req.SrcFilePath, req.DstFilePath, req.Overwrite)
	})
	return body
}

func (m *guestFileManager) MoveDirectoryInGuest(ctx *simulator.Context, req *types.MoveDirectoryInGuest) soap.HasFault {
	body := new(methods.MoveDirectoryInGuestBody)
	body.Fault_ = m.call(ctx, "MoveDirectoryInGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		body.Res = new(types.MoveDirectoryInGuestResponse)
		return v.fs.moveDir(req.SrcDirectoryPath, req.DstDirectoryPath)
	})
	return body
}

func (m *guestFileManager) ChangeFileAttributesInGuest(ctx *simulator.Context, req *types.ChangeFileAttributesInGuest) soap.HasFault {
	body := new(methods.ChangeFileAttributesInGuestBody)
	body.Fault_ = m.call(ctx, "ChangeFileAttributesInGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		body.Res = new(types.ChangeFileAttributesInGuestResponse)
		if req.FileAttributes == nil {
			return nil
		}
		return v.fs.chattr(req.GuestFilePath, req.FileAttributes)
	})
	return body
}

func (m *guestFileManager) CreateTemporaryFileInGuest(ctx *simulator.Context, req *types.CreateTemporaryFileInGuest) soap.HasFault {
	body := new(methods.CreateTemporaryFileInGuestBody)
	body.Fault_ = m.call(ctx, "CreateTemporaryFileInGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		p, f := v.fs.mktemp(req.DirectoryPath, req.Prefix, req.Suffix, false)
		body.Res = &types.CreateTemporaryFileInGuestResponse{Returnval: p}
		return f
	})
	return body
}

func (m *guestFileManager) CreateTemporaryDirectoryInGuest(ctx *simulator.Context, req *types.CreateTemporaryDirectoryInGuest) soap.HasFault {
	body := new(methods.CreateTemporaryDirectoryInGuestBody)
	body.Fault_ = m.call(ctx, "CreateTemporaryDirectoryInGuest", req.Vm, req.Auth, func(v *guestVM) types.BaseMethodFault {
		p, f := v.fs.mktemp(req.DirectoryPath, req.Prefix, req.Suffix, true)
		body.Res = &types.CreateTemporaryDirectoryInGuestResponse{Returnval: p}
		return f
	})
	return body
}
