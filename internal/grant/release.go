package grant

import "errors"

// Errors a Releaser returns about what the caller presented, wrapped with
// the detail (errors.Is finds them). Both are the caller's fault and change
// nothing: the credential lives on.
var (
	// ErrCredentialRequired says the kind ends a credential only when shown
	// it (GitHub deletes an installation token only when presented with
	// it), and the release presented none: a bad request.
	ErrCredentialRequired = errors.New("this credential is released only when it is presented")
	// ErrWrongCredential says the presented credential is not the one
	// minted for the request being released: access denied.
	ErrWrongCredential = errors.New("the presented credential is not the one this request minted")
)
