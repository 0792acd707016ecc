// Package trust loads, validates and evaluates Ferry's trust policies: the
// YAML files in which a pipeline owner says which CI jobs may mint which
// credential.
//
// A directory of policies is parsed once into a Set (LoadDir): every
// pattern is compiled, every grant validated by its kind, and every
// problem reported as FILE:LINE:COL. Deciding a request (Set.Decide, which
// the broker, `ferry policy test` and `ferry policy explain` all call)
// only looks a policy up by name, runs precompiled matchers and fills in
// the grant's templates, so loading errors and runtime denials are
// different code paths, as in octo-sts.
//
// Rules this package fixes beyond the design contract:
//
//   - Policy names match ^[a-z0-9][a-z0-9._-]{0,63}$ (they appear in URLs,
//     audit records and metrics labels).
//   - A match value is exact text unless it holds * or ?, which make it a
//     glob: * is any run of characters other than /, ** any run at all, ?
//     one character other than /, and every other character (including
//     [ and ]) is literal. {regex: RE} is RE2 anchored at both ends. YAML
//     booleans and integers are compared by their text, so true matches the
//     boolean claim true and the string "true", and 892345671 matches the
//     string "892345671". Floats and nulls are refused at load.
//   - Identity pinning: match must hold at least one of repository,
//     repository_id, repository_owner, repository_owner_id, project_path,
//     project_id, namespace_path, namespace_id or sub whose every
//     alternative is bounded. Exact text is bounded. A glob or regex is
//     bounded only on the path-like keys (repository, project_path,
//     namespace_path, sub), and only when its literal prefix, before any
//     wildcard, holds a whole first segment ending in "/" ("acme/*" pins
//     the owner acme; "*/*", "**", "acme-*/x" and "repo:*" pin nothing).
//     Patterns never pin ids or owners.
//   - Evaluation order: issuer, then deny blocks (an explicit deny wins,
//     as in IAM, and is what the caller is told), then match keys in file
//     order. The first failure decides.
//   - Rule names: "unknown_policy", "issuer", "deny[N].KEY" for a one-key
//     deny block, "deny[N]" for a block of several keys, "match.KEY" for a
//     failed match key, and "match" when the request is allowed.
//   - Grants: the grant block holds exactly one kind's block, which that
//     kind parses and checks (internal/grant, the kinds listed in
//     internal/registry). Which of its fields may hold {{claim}} templates,
//     and what a substituted value must look like there, is the kind's
//     business (internal/claimtmpl); trust only calls Render.
package trust
