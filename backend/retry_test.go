package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vspherefs/vspherefs/remote"
)

func resetErr() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

func refusedErr() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

// TestTransportErrorsHideErrno: no socket errno reaches fs through an
// *Error; the kind is ErrIO and the failure stays retryable.
func TestTransportErrorsHideErrno(t *testing.T) {
	for _, raw := range []error{resetErr(), refusedErr(), fmt.Errorf("Get x: %w", syscall.ECONNABORTED)} {
		for _, err := range []error{TransportError("GET guest file", "vm:/f", raw), NewError("call", "on", remote.ErrIO, raw)} {
			var en syscall.Errno
			if errors.As(err, &en) {
				t.Errorf("%v: errno %v reachable", err, en)
			}
			if !errors.Is(err, remote.ErrIO) {
				t.Errorf("%v: not ErrIO", err)
			}
			if !Transient(err) {
				t.Errorf("%v: not transient", err)
			}
		}
	}
}

func TestTransient(t *testing.T) {
	yes := []error{
		resetErr(), refusedErr(),
		&remote.Error{Kind: remote.ErrIO, Fault: "503 Service Unavailable", Err: &HTTPStatus{503, "503 Service Unavailable"}},
		errors.New("POST /sdk: 503 Service Unavailable"),
	}
	no := []error{
		context.Canceled, context.DeadlineExceeded,
		&remote.Error{Kind: remote.ErrIO, Err: ErrStalled, Fault: "no data received"},
		&remote.Error{Kind: remote.ErrNotFound, Fault: "404 Not Found", Err: &HTTPStatus{404, "404 Not Found"}},
		errors.New("x509: certificate signed by unknown authority"),
	}
	for _, err := range yes {
		if !Transient(err) {
			t.Errorf("%v: want transient", err)
		}
	}
	for _, err := range no {
		if Transient(err) {
			t.Errorf("%v: want not transient", err)
		}
	}
	for i := 0; i < 20; i++ {
		if d := Backoff(i); d < retryBase/2 || d > retryCap {
			t.Errorf("backoff(%d) = %v", i, d)
		}
	}
}

// TestDoRetries: idempotent calls are retried on transient failures within
// the one deadline; others only when the server cannot have seen them.
func TestDoRetries(t *testing.T) {
	c := &Conn{Config: Config{Timeout: 2 * time.Second, Log: slog.New(slog.DiscardHandler)}}
	tries := 0
	err := c.Do(context.Background(), "ListFilesInGuest", "vm:/", func(ctx context.Context) error {
		if tries++; tries < 3 {
			return resetErr()
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Fatalf("idempotent: %v after %d tries", err, tries)
	}
	tries = 0
	err = c.Do(context.Background(), "MoveFileInGuest", "vm:/", func(ctx context.Context) error {
		tries++
		return resetErr()
	})
	if err == nil || tries != 1 {
		t.Fatalf("not idempotent, reset: %v after %d tries, want 1", err, tries)
	}
	tries = 0
	err = c.Do(context.Background(), "MoveFileInGuest", "vm:/", func(ctx context.Context) error {
		if tries++; tries < 2 {
			return refusedErr()
		}
		return nil
	})
	if err != nil || tries != 2 {
		t.Fatalf("not idempotent, refused: %v after %d tries, want 2", err, tries)
	}
	// Failing for good: EIO within the one deadline, not a multiple.
	start := time.Now()
	err = c.Do(context.Background(), "library:list", "", func(ctx context.Context) error { return resetErr() })
	if took := time.Since(start); !errors.Is(err, remote.ErrIO) || took > 3*time.Second {
		t.Fatalf("exhausted: %v after %v", err, took)
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		t.Fatalf("exhausted: errno %v reachable", en)
	}
	// A hung server: one deadline.
	start = time.Now()
	err = c.Do(context.Background(), "library:list", "", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if took := time.Since(start); !errors.Is(err, remote.ErrIO) || took > 3*time.Second {
		t.Fatalf("hung: %v after %v", err, took)
	}
	// Interrupted while waiting to retry: the caller's cancellation (EINTR),
	// not the last try's failure or "no answer within --timeout" (EIO).
	ictx, cancel := context.WithCancel(context.Background())
	tries = 0
	err = c.Do(ictx, "library:list", "", func(ctx context.Context) error {
		if tries++; tries == 2 {
			time.AfterFunc(10*time.Millisecond, cancel)
		}
		return resetErr()
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, remote.ErrIO) {
		t.Fatalf("interrupted between tries: %v after %d tries, want context.Canceled", err, tries)
	}
}
