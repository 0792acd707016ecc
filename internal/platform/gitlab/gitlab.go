// Package gitlab is what Ferry knows about GitLab CI's ID tokens (gitlab.com
// and self-managed GitLab). GitLab sends ids as numbers or strings depending
// on its version, and ref as a bare branch or tag name.
package gitlab

import (
	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/platform"
)

// Platform describes GitLab CI ID tokens.
func Platform() *platform.Platform {
	return &platform.Platform{
		Name:   "gitlab",
		Marker: "project_path",
		Strings: []string{
			"project_path", "namespace_path", "pipeline_source", "user_login", "user_email", "ref", "ref_type",
			"ref_path", "environment", "job_project_path", "job_namespace_path", "deployment_tier",
			"environment_action", "ci_config_ref_uri", "sha",
		},
		IDs: []string{
			"project_id", "namespace_id", "pipeline_id", "job_id", "user_id", "runner_id", "job_project_id", "job_namespace_id",
		},
		Identifying: []string{
			"ref", "environment", "project_path", "project_id", "pipeline_id", "job_id", "pipeline_source", "user_login",
		},
		Pins: []platform.Pin{
			{Claim: "project_path", Path: true, StableID: "project_id",
				IDWarning: "project_path is pinned by path only: pin project_id too, so a re-created project of the same path cannot reach it"},
			{Claim: "project_id"},
			{Claim: "namespace_path", Path: true},
			{Claim: "namespace_id"},
		},
		Risks: []platform.Risk{
			{Probe: []platform.ProbeClaim{{Claim: "pipeline_source", Value: "merge_request_event"}},
				Message: "merge request pipelines (pipeline_source merge_request_event) are not refused: a merge request, possibly from a fork, could reach it"},
			{Probe: []platform.ProbeClaim{{Claim: "ref_protected", Value: "false"}}, Exact: true,
				Message: "no ref_protected: true pin: a branch anyone with Developer access can push to could reach it"},
		},
		Job: job,
	}
}

// job names a CI job: the project, its pipeline and job ids, and a subject
// in the shape of GitLab's own sub.
func job(c *claims.Set) platform.Job {
	p := c.Text("project_path")
	return platform.Job{Who: p, Run: c.Text("pipeline_id"), ID: c.Text("job_id"),
		Subject: "project_path:" + p + ":ref_type:" + c.Text("ref_type") + ":ref:" + c.Text("ref")}
}
