package policy

import (
	"bytes"
	"fmt"

	"github.com/BurntSushi/toml"
)

// LoadOptions says where to look for the policy.
type LoadOptions struct {
	Path   string // --policy; empty = the standard lookup
	System bool   // /etc/stowage (root) rather than $XDG_CONFIG_HOME/stowage
}

// Load returns the effective policy and the files it came from.
// TODO(policy owner): lookup, drop-ins, strict validation with positions.
func Load(o LoadOptions) (*Policy, []string, error) {
	var p Policy
	if _, err := toml.NewDecoder(bytes.NewReader(defaultTOML)).Decode(&p); err != nil {
		return nil, nil, fmt.Errorf("embedded default policy: %w", err)
	}
	return &p, []string{"(embedded default)"}, nil
}
