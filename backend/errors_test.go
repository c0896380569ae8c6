package backend

import (
	"errors"
	"strings"
	"testing"

	"github.com/vspherefs/vspherefs/remote"
)

func TestErrorRedactsTransferTokens(t *testing.T) {
	err := NewError("PUT guest file", "vm:/etc/x", remote.ErrIO, errors.New(`Put "https://10.0.0.1/guestFile?id=1&token=abcdef": connection reset`))
	if strings.Contains(err.Error(), "abcdef") || !strings.Contains(err.Error(), "https://10.0.0.1/guestFile?…") {
		t.Fatalf("not redacted: %s", err)
	}
	if !errors.Is(err, remote.ErrIO) {
		t.Fatal("kind lost")
	}
}
