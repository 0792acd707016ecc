// Package github is what Ferry knows about GitHub Actions' OIDC tokens
// (github.com, GitHub Enterprise Cloud and Server alike). GitHub sends every
// custom claim as a string, ids and booleans included.
package github

import (
	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/platform"
)

// Platform describes GitHub Actions tokens.
func Platform() *platform.Platform {
	return &platform.Platform{
		Name:   "github",
		Marker: "repository",
		Strings: []string{
			"repository", "repository_owner", "ref", "ref_type", "environment", "event_name", "actor",
			"workflow", "workflow_ref", "job_workflow_ref", "base_ref", "head_ref", "sha",
			"repository_visibility", "runner_environment", "enterprise",
		},
		IDs: []string{
			"repository_id", "repository_owner_id", "actor_id", "run_id", "run_number", "run_attempt", "enterprise_id",
		},
		Identifying: []string{
			"repository", "repository_id", "ref", "environment", "event_name", "run_id", "actor", "job_workflow_ref",
		},
		Pins: []platform.Pin{
			{Claim: "repository", Path: true, StableID: "repository_id",
				IDWarning: "repository is pinned by name only: pin repository_id too, so a deleted and re-created repository of the same name cannot reach it"},
			{Claim: "repository_id"},
			{Claim: "repository_owner"},
			{Claim: "repository_owner_id"},
		},
		Risks: []platform.Risk{
			{Probe: []platform.ProbeClaim{{Claim: "event_name", Value: "pull_request_target"}},
				Message: "pull_request_target events are not refused: they run with the base branch's ref, so a ref pin does not stop them; add deny: [{event_name: pull_request_target}]"},
			{Probe: []platform.ProbeClaim{{Claim: "event_name", Value: "pull_request"}, {Claim: "ref", Value: "refs/pull/1/merge"}},
				Message: "pull_request events can reach it: code from a pull request, not yet reviewed, would get the credential; pin event_name or ref"},
		},
		Job: job,
	}
}

// job names a workflow run: the repository, the run id (GitHub's tokens
// name no finer job), and a subject in GitHub's own default sub format.
func job(c *claims.Set) platform.Job {
	repo, run := c.Text("repository"), c.Text("run_id")
	return platform.Job{Who: repo, Run: run, ID: run, Subject: "repo:" + repo + ":ref:" + c.Text("ref")}
}
