package policy

import _ "embed"

// defaultTOML is a copy of etc/stowage/stowage.toml (a test proves they agree).
//
//go:embed default.toml
var defaultTOML []byte

// DefaultTOML returns the embedded default policy file.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }
