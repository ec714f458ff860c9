package main

import (
	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/jobs/refresh"
	"github.com/stowage/stowage/jobs/shared/jobenv"
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/jobs/volumes"
)

// allJobs is every job, one line a job, in a stable order (status,
// metrics, docs): the one place a job is registered. `stowage run` gets a
// command per job, and the daemon and its adapters their descriptors
// (registryOf).
func allJobs() []jobenv.Job {
	return []jobenv.Job{
		refresh.Entry,
		verify.Entry,
		prune.Entry,
		volumes.Entry,
	}
}

// registryOf is the jobs' descriptors.
func registryOf(jobs []jobenv.Job) jobspec.Registry {
	r := make(jobspec.Registry, len(jobs))
	for i, j := range jobs {
		r[i] = j.Spec
	}
	return r
}
