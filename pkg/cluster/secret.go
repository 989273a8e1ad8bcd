package cluster

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrBadSecret is wrapped by every error about the gossip key's format or size.
var ErrBadSecret = errors.New("bad cluster secret")

// LoadSecret reads the gossip encryption key from path. The file holds the
// key in one line of text, either hex (32, 48 or 64 hex digits) or standard
// base64, padded or not (e.g. `head -c 32 /dev/urandom | base64`); surrounding
// whitespace is ignored. Hex is tried first, so an unpadded base64 key that
// happens to be all hex digits is read as hex. The key must be 16, 24 or 32
// bytes (AES-128, -192, -256).
func LoadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster secret: %w", err)
	}
	key, err := parseSecret(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("cluster secret %s: %w", path, err)
	}
	return key, nil
}

func parseSecret(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadSecret)
	}
	var sizeErr error // of the first encoding that decoded
	if key, err := hex.DecodeString(s); err == nil {
		if sizeErr = checkSecret(key); sizeErr == nil {
			return key, nil
		}
		sizeErr = fmt.Errorf("as hex: %w", sizeErr)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		key, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		err = checkSecret(key)
		if err == nil {
			return key, nil
		}
		if sizeErr == nil {
			sizeErr = fmt.Errorf("as base64: %w", err)
		}
	}
	if sizeErr != nil {
		return nil, sizeErr
	}
	return nil, fmt.Errorf("%w: neither hex nor base64", ErrBadSecret)
}

func checkSecret(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	default:
		return fmt.Errorf("%w: key is %d bytes, want 16, 24 or 32", ErrBadSecret, len(key))
	}
}
