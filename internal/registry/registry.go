// Package registry is the one place that lists what Ferry knows: the grant
// kinds it can mint and the CI platforms whose tokens it reads. Adding a
// grant kind is a package implementing grant.Kind and one line in Kinds;
// adding a platform is a package under internal/platform and one line in
// Platforms.
package registry

import (
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/ghapp"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/platform"
	"github.com/ferry-broker/ferry/internal/platform/github"
	"github.com/ferry-broker/ferry/internal/platform/gitlab"
)

// Kinds are the grant kinds, in the order they are listed to users.
func Kinds() grant.Kinds {
	return grant.Kinds{
		awssts.Kind{},
		gcpiam.Kind{},
		tokensign.Kind{},
		ghapp.Kind{},
	}
}

// Platforms are the CI platforms, the first being the default for a policy
// that names none.
func Platforms() platform.Set {
	return platform.Set{
		github.Platform(),
		gitlab.Platform(),
	}
}
