package ghapp

import (
	"sort"
	"strings"
)

// Access levels of a GitHub App permission.
const (
	Read  = "read"
	Write = "write"
	Admin = "admin"
)

// Reach is what a permission reaches, whatever repositories a token names.
type Reach int

const (
	// InRepositories: only the repositories the token names.
	InRepositories Reach = iota
	// InOrganization: the owner organization as a whole.
	InOrganization
	// InAccount: the owner's user account.
	InAccount
	// InEnterprise: the enterprise the owner belongs to.
	InEnterprise
)

func (r Reach) String() string {
	switch r {
	case InOrganization:
		return "organization"
	case InAccount:
		return "user account"
	case InEnterprise:
		return "enterprise"
	}
	return "repository"
}

// Permission is one permission an installation token may be asked for.
type Permission struct {
	Reach  Reach
	Levels []string // the levels GitHub accepts for it, weakest first
}

var (
	readOnly       = []string{Read}
	writeOnly      = []string{Write}
	readWrite      = []string{Read, Write}
	readWriteAdmin = []string{Read, Write, Admin}
)

// permissions are the names and levels GitHub's REST API takes in the
// permissions of POST /app/installations/{id}/access_tokens (the
// app-permissions schema of API version 2022-11-28). A name GitHub adds
// later needs a line here before a policy can ask for it: a name GitHub
// does not know would otherwise reach GitHub, which refuses the whole
// request at exchange time instead of the policy at load.
var permissions = map[string]Permission{
	// Repository permissions.
	"actions":                      {InRepositories, readWrite},
	"administration":               {InRepositories, readWrite},
	"artifact_metadata":            {InRepositories, readWrite},
	"attestations":                 {InRepositories, readWrite},
	"checks":                       {InRepositories, readWrite},
	"codespaces":                   {InRepositories, readWrite},
	"contents":                     {InRepositories, readWrite},
	"dependabot_secrets":           {InRepositories, readWrite},
	"deployments":                  {InRepositories, readWrite},
	"discussions":                  {InRepositories, readWrite},
	"environments":                 {InRepositories, readWrite},
	"interaction_limits":           {InRepositories, readWrite},
	"issues":                       {InRepositories, readWrite},
	"merge_queues":                 {InRepositories, readWrite},
	"metadata":                     {InRepositories, readWrite},
	"packages":                     {InRepositories, readWrite},
	"pages":                        {InRepositories, readWrite},
	"pull_requests":                {InRepositories, readWrite},
	"repository_custom_properties": {InRepositories, readWrite},
	"repository_hooks":             {InRepositories, readWrite},
	"repository_projects":          {InRepositories, readWriteAdmin},
	"secret_scanning_alerts":       {InRepositories, readWrite},
	"secrets":                      {InRepositories, readWrite},
	"security_events":              {InRepositories, readWrite},
	"single_file":                  {InRepositories, readWrite},
	"statuses":                     {InRepositories, readWrite},
	"vulnerability_alerts":         {InRepositories, readWrite},
	"workflows":                    {InRepositories, writeOnly},

	// Organization permissions.
	"custom_properties_for_organizations":         {InOrganization, readWrite},
	"members":                                     {InOrganization, readWrite},
	"organization_administration":                 {InOrganization, readWrite},
	"organization_announcement_banners":           {InOrganization, readWrite},
	"organization_copilot_seat_management":        {InOrganization, writeOnly},
	"organization_custom_org_roles":               {InOrganization, readWrite},
	"organization_custom_properties":              {InOrganization, readWriteAdmin},
	"organization_custom_roles":                   {InOrganization, readWrite},
	"organization_events":                         {InOrganization, readOnly},
	"organization_hooks":                          {InOrganization, readWrite},
	"organization_packages":                       {InOrganization, readWrite},
	"organization_personal_access_token_requests": {InOrganization, readWrite},
	"organization_personal_access_tokens":         {InOrganization, readWrite},
	"organization_plan":                           {InOrganization, readOnly},
	"organization_projects":                       {InOrganization, readWriteAdmin},
	"organization_secrets":                        {InOrganization, readWrite},
	"organization_self_hosted_runners":            {InOrganization, readWrite},
	"organization_user_blocking":                  {InOrganization, readWrite},
	"team_discussions":                            {InOrganization, readWrite},

	// User account permissions.
	"email_addresses": {InAccount, readWrite},
	"followers":       {InAccount, readWrite},
	"git_ssh_keys":    {InAccount, readWrite},
	"gpg_keys":        {InAccount, readWrite},
	"profile":         {InAccount, writeOnly},
	"starring":        {InAccount, readWrite},

	// Enterprise permissions.
	"enterprise_custom_properties_for_organizations": {InEnterprise, readWriteAdmin},
}

// LookupPermission returns the permission of that name, as GitHub spells
// it.
func LookupPermission(name string) (Permission, bool) {
	p, ok := permissions[name]
	return p, ok
}

// Allows reports whether GitHub accepts level for the permission.
func (p Permission) Allows(level string) bool {
	for _, l := range p.Levels {
		if l == level {
			return true
		}
	}
	return false
}

// suggest names the permission a misspelt name probably meant: the
// hyphenated or capitalised form GitHub's web pages show ("Pull requests"),
// or a singular for a plural. "" when none is close.
func suggest(name string) string {
	n := strings.ToLower(strings.NewReplacer("-", "_", " ", "_").Replace(strings.TrimSpace(name)))
	for _, c := range []string{n, n + "s", strings.TrimSuffix(n, "s")} {
		if _, ok := permissions[c]; ok && c != name {
			return c
		}
	}
	return ""
}

// formatPermissions writes permissions sorted by name, as "contents: read,
// pull_requests: write".
func formatPermissions(perms map[string]string) string {
	names := make([]string, 0, len(perms))
	for n := range perms {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + ": " + perms[n]
	}
	return strings.Join(parts, ", ")
}
