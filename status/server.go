package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// SocketName is the status socket's name in the mount's own cache folder.
const SocketName = "status.sock"

// Server answers each connection on the socket with one JSON Snapshot.
type Server struct {
	ln   net.Listener
	dirf *os.File
	wg   sync.WaitGroup
}

// Serve listens on dir/status.sock, mode 0600, and answers with snap().
// The path is reached through /proc/self/fd, so that a deep cache dir does
// not hit the 108-byte limit of a socket address.
func Serve(dir string, snap func() Snapshot) (*Server, error) {
	dirf, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, SocketName)
	_ = os.Remove(p)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", fmt.Sprintf("/proc/self/fd/%d/%s", dirf.Fd(), SocketName))
	syscall.Umask(old)
	if err != nil {
		dirf.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(p, 0o600); err != nil {
		ln.Close()
		dirf.Close()
		return nil, err
	}
	s := &Server{ln: ln, dirf: dirf}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = json.NewEncoder(c).Encode(snap())
			}()
		}
	}()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return filepath.Join(s.dirf.Name(), SocketName) }

// Close stops serving and removes the socket.
func (s *Server) Close() {
	s.ln.Close()
	s.wg.Wait()
	_ = os.Remove(s.Path())
	s.dirf.Close()
}

// XattrSocket is the attribute of a mount's root that names its status socket.
const XattrSocket = "user.vsphere.status_socket"

// Query asks the mount at mountpoint for its Snapshot: the root's
// user.vsphere.status_socket attribute names the socket.
func Query(mountpoint string) (*Snapshot, error) {
	buf := make([]byte, 4096)
	n, err := syscall.Getxattr(mountpoint, XattrSocket, buf)
	if err != nil {
		if errors.Is(err, syscall.ENODATA) || errors.Is(err, syscall.ENOTSUP) {
			return nil, fmt.Errorf("%s is not a vspherefs mount (no %s)", mountpoint, XattrSocket)
		}
		return nil, fmt.Errorf("%s: %w", mountpoint, err)
	}
	return QuerySocket(string(buf[:n]))
}

// QuerySocket asks the socket at path.
func QuerySocket(path string) (*Snapshot, error) {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	c, err := net.DialTimeout("unix", fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)), 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var s Snapshot
	if err := json.NewDecoder(c).Decode(&s); err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	return &s, nil
}
