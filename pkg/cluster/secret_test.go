package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadSecret(t *testing.T) {
	key16 := bytes.Repeat([]byte{0xab}, 16)
	key24 := []byte("0123456789abcdefghijklmn")
	key32 := bytes.Repeat([]byte{0x01, 0xfe}, 16)
	tests := []struct {
		name    string
		content string
		want    []byte
	}{
		{"hex 16", hex.EncodeToString(key16), key16},
		{"hex 32 upper case, newline", strings.ToUpper(hex.EncodeToString(key32)) + "\n", key32},
		{"base64 16", base64.StdEncoding.EncodeToString(key16), key16},
		{"base64 24", base64.StdEncoding.EncodeToString(key24), key24},
		{"base64 32 with spaces", "  " + base64.StdEncoding.EncodeToString(key32) + " \n", key32},
		{"base64 32 unpadded", base64.RawStdEncoding.EncodeToString(key32), key32},
		{"base64 16 unpadded, even length", base64.RawStdEncoding.EncodeToString(key16), key16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadSecret(writeFile(t, tt.content))
			if err != nil {
				t.Fatalf("LoadSecret: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("LoadSecret = %x, want %x", got, tt.want)
			}
		})
	}
}

func TestLoadSecretErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		wantMsg string
	}{
		{"empty", "\n", "empty"},
		{"hex 8 bytes", hex.EncodeToString(make([]byte, 8)), "as hex: bad cluster secret: key is 8 bytes, want 16, 24 or 32"},
		{"hex 33 bytes", hex.EncodeToString(make([]byte, 33)), "as hex: bad cluster secret: key is 33 bytes"},
		{"base64 20 bytes", base64.StdEncoding.EncodeToString(make([]byte, 20)), "as base64: bad cluster secret: key is 20 bytes"},
		{"base64 64 bytes", base64.StdEncoding.EncodeToString(make([]byte, 64)), "as base64: bad cluster secret: key is 64 bytes"},
		{"not an encoding", "correct horse battery staple!", "neither hex nor base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.content)
			_, err := LoadSecret(path)
			if !errors.Is(err, ErrBadSecret) {
				t.Fatalf("LoadSecret error = %v, want ErrBadSecret", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), path) {
				t.Errorf("LoadSecret error = %q, want it to name %q and the file", err, tt.wantMsg)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		_, err := LoadSecret(filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LoadSecret error = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("unreadable file", func(t *testing.T) {
		// a directory cannot be read as a file, even by root
		_, err := LoadSecret(t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "read cluster secret") {
			t.Errorf("LoadSecret error = %v, want a read error", err)
		}
	})
}
