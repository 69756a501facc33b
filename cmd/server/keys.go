package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Files under DATA_DIR that keep generated dev keys across restarts.
const (
	devSigningKeyFile = "signing-key.pem"
	devSecretKeyFile  = "secret-key"
	devCodeSecretFile = "code-secret"
)

// loadKeySet reads SIGNING_KEY_FILE, or keeps a generated key under DATA_DIR.
func loadKeySet(cfg Config, log zerolog.Logger) (*tokens.KeySet, error) {
	path, name := cfg.SigningKeyFile, "SIGNING_KEY_FILE"
	if path == "" {
		path, name = filepath.Join(cfg.DataDir, devSigningKeyFile), "DATA_DIR"
		created, err := keepOnce(path, func() ([]byte, error) { return tokens.EncodePEM(tokens.GenerateKey()) })
		if err != nil {
			return nil, fmt.Errorf("%s: cannot keep a generated signing key: %w", name, err)
		}
		if created {
			log.Warn().Str("path", path).Msg("generated a signing key for development; set SIGNING_KEY_FILE in production")
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	privs, err := tokens.ParsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, path, err)
	}
	return tokens.NewKeySet(privs...)
}

// loadSecretKeys returns SECRET_KEYS, or a dev key kept under DATA_DIR; dev
// reports whether the dev key is in use.
func loadSecretKeys(cfg Config) (keys []string, dev bool, err error) {
	if len(cfg.SecretKeys) > 0 {
		return cfg.SecretKeys, false, nil
	}
	path := filepath.Join(cfg.DataDir, devSecretKeyFile)
	if _, err := keepOnce(path, func() ([]byte, error) { return []byte(newSecretKey() + "\n"), nil }); err != nil {
		return nil, false, fmt.Errorf("DATA_DIR: cannot keep a generated secret key: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("DATA_DIR: %w", err)
	}
	key := strings.TrimSpace(string(data))
	if len(key) < 16 {
		return nil, false, fmt.Errorf("DATA_DIR: %s holds no usable key; delete it to generate a new one", path)
	}
	return []string{key}, true, nil
}

// loadCodes returns the one-time code secrets: CODE_SECRETS, or in
// development (no SECRET_KEYS either) a secret kept under DATA_DIR. A
// deployment with SECRET_KEYS but no CODE_SECRETS has no codes (nil): every
// replica must hash with the same secret, so none is made up, and nothing is
// written to disk.
func loadCodes(cfg Config) (*tokens.Codes, error) {
	switch {
	case len(cfg.CodeSecrets) > 0:
		return tokens.NewCodes(cfg.CodeSecrets...)
	case len(cfg.SecretKeys) > 0:
		return nil, nil
	}
	path := filepath.Join(cfg.DataDir, devCodeSecretFile)
	if _, err := keepOnce(path, func() ([]byte, error) { return []byte(tokens.RandomBase62(48) + "\n"), nil }); err != nil {
		return nil, fmt.Errorf("DATA_DIR: cannot keep a generated code secret: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	codes, err := tokens.NewCodes([]byte(strings.TrimSpace(string(data))))
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR: %s: %w; delete it to generate a new one", path, err)
	}
	return codes, nil
}

// newSecretKey returns a random dev secret key: sk_dev_ and 40 base62 characters.
func newSecretKey() string { return "sk_dev_" + tokens.RandomBase62(40) }

// keepOnce writes make's output to path unless the file exists, creating it
// with O_EXCL so two processes starting at once keep the same content.
func keepOnce(path string, make func() ([]byte, error)) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	data, err := make()
	if err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	// A hard link fails if path exists, so the first writer wins and no
	// reader ever sees a half-written file.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
