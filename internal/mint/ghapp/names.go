package ghapp

import (
	"fmt"
	"regexp"
	"strings"
)

// GitHub's limits on names and on one token's repositories.
const (
	MaxOwnerLen      = 39
	MaxRepositoryLen = 100
	// MaxRepositories is how many repositories GitHub lets one installation
	// token name.
	MaxRepositories = 500
)

// ownerName is a GitHub user or organization login: letters, digits and
// hyphens, not starting with a hyphen. Underscores are allowed for the
// logins of Enterprise Managed Users (name_shortcode).
var ownerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// repositoryName is what GitHub allows in a repository's name.
var repositoryName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// checkOwner says what makes s unfit as an owner's login, "" if it is fine.
func checkOwner(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > MaxOwnerLen:
		return fmt.Sprintf("it is longer than GitHub's %d characters", MaxOwnerLen)
	case !ownerName.MatchString(s):
		return "a GitHub login is letters, digits and hyphens, not starting with a hyphen"
	}
	return ""
}

// checkRepository says what makes s unfit as a repository name within an
// owner, "" if it is fine.
func checkRepository(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > MaxRepositoryLen:
		return fmt.Sprintf("it is longer than GitHub's %d characters", MaxRepositoryLen)
	case s == "." || s == "..":
		return "it is not a repository name"
	case !repositoryName.MatchString(s):
		return "a GitHub repository name is letters, digits, '.', '-' and '_'"
	}
	return ""
}

// splitRepository reads a repositories entry: NAME, or OWNER/NAME, whose
// OWNER must be the grant's owner (GitHub compares logins without case).
// It returns the name within the owner, or why the entry is refused.
func splitRepository(entry, owner string) (string, string) {
	name := entry
	if o, n, full := strings.Cut(entry, "/"); full {
		if why := checkOwner(o); why != "" {
			return "", fmt.Sprintf("%q is not OWNER/NAME: %s", entry, why)
		}
		if !strings.EqualFold(o, owner) {
			return "", fmt.Sprintf("%q is a repository of %q, outside the grant's owner %q", entry, o, owner)
		}
		name = n
	}
	if why := checkRepository(name); why != "" {
		return "", fmt.Sprintf("%q is not a repository name: %s", entry, why)
	}
	return name, ""
}
