// Package deploypolicy makes trust policies shaped like a production
// deploy policy, one per repository, for the benchmarks and the load test
// that load them by the thousand. Both load the same shape, so that the
// memory a benchmark measures is the memory the load test's broker holds.
package deploypolicy

import "fmt"

// Name is the i-th policy's name; its file is Name(i) + ".yaml".
func Name(i int) string { return fmt.Sprintf("deploy-%05d", i) }

// YAML is the i-th policy: GitHub pushes and dispatches to main of the
// production environment of acme/app-i, bots and pull_request_target
// refused, granting AWS credentials with a templated session policy.
func YAML(i int) []byte {
	return fmt.Appendf(nil, `issuer: github
match:
  repository: %[1]s
  repository_id: %[2]q
  ref: refs/heads/main
  environment: production
  event_name: [push, workflow_dispatch]
  job_workflow_ref: "%[1]s/.github/workflows/*.yml@refs/heads/main"
deny:
  - event_name: pull_request_target
  - actor: "*[bot]"
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/deploy-%[3]d
    session_policy:
      Statement: [{Effect: Allow, Action: "s3:*", Resource: "arn:aws:s3:::artifacts/{{repository}}/*"}]
    session_tags: [repository, ref, run_id]
`, Repository(i), RepositoryID(i), i)
}

// Repository and RepositoryID are the i-th policy's repository claims.
func Repository(i int) string { return fmt.Sprintf("acme/app-%d", i) }

// RepositoryID is the i-th policy's repository_id.
func RepositoryID(i int) string { return fmt.Sprint(100000 + i) }

// WorkflowRef is a job_workflow_ref the i-th policy allows.
func WorkflowRef(i int) string {
	return Repository(i) + "/.github/workflows/deploy.yml@refs/heads/main"
}
