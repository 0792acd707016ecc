package audit

import "time"

// Decision values.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Record is one decision, allow or deny. It never holds a token, a secret
// key, a session token or an access token: Credential carries only ids.
//
// The contract's fields are always present, empty when they do not apply,
// so a consumer with a fixed schema finds every key on every line; the
// identifying claims appear only when the token carried them, since a GitHub
// record has no GitLab claims and the reverse.
type Record struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Decision  string    `json:"decision"`
	Error     string    `json:"error"`  // the API error code on deny
	Reason    string    `json:"reason"` // why: the failing claim, the deny rule, the upstream message
	Rule      string    `json:"rule"`   // the deciding rule, e.g. "match.ref" or "deny[0]"
	Policy    string    `json:"policy"`
	Issuer    string    `json:"issuer"`
	Subject   string    `json:"subject"`

	// Identifying claims, GitHub.
	Repository     string `json:"repository,omitempty"`
	RepositoryID   string `json:"repository_id,omitempty"`
	Ref            string `json:"ref,omitempty"`
	Environment    string `json:"environment,omitempty"`
	EventName      string `json:"event_name,omitempty"`
	RunID          string `json:"run_id,omitempty"`
	Actor          string `json:"actor,omitempty"`
	JobWorkflowRef string `json:"job_workflow_ref,omitempty"`
	// Identifying claims, GitLab.
	ProjectPath    string `json:"project_path,omitempty"`
	ProjectID      string `json:"project_id,omitempty"`
	PipelineID     string `json:"pipeline_id,omitempty"`
	JobID          string `json:"job_id,omitempty"`
	PipelineSource string `json:"pipeline_source,omitempty"`
	UserLogin      string `json:"user_login,omitempty"`

	Credential *Credential `json:"credential"` // null on deny
	ClientIP   string      `json:"client_ip"`

	Prev string `json:"prev"`
	Hash string `json:"hash"`
}

// Credential identifies what was minted without revealing it.
type Credential struct {
	Type      string    `json:"type"`         // aws | gcp | token
	ID        string    `json:"id,omitempty"` // AWS access key id, token jti, service account
	ExpiresAt time.Time `json:"expires_at"`
}
