// Package testjobs gives the tests of the daemon and its adapters the real
// jobs' registry. The command line builds the registry from its list of
// jobs (which links them); these tests only need the light descriptors,
// which link no store.
package testjobs

import (
	"github.com/stowage/stowage/jobs/prune/prunespec"
	"github.com/stowage/stowage/jobs/refresh/refreshspec"
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/verify/verifyspec"
	"github.com/stowage/stowage/jobs/volumes/volumesspec"
)

// Registry returns refresh, verify, prune and volumes, in the command
// line's order.
func Registry() jobspec.Registry {
	return jobspec.Registry{refreshspec.Descriptor, verifyspec.Descriptor, prunespec.Descriptor, volumesspec.Descriptor}
}
