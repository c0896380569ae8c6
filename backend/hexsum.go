package backend

import (
	"encoding/hex"
	"hash"
)

// HexSum is a hash as the lower-case hex that manifests and the API use.
func HexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }
