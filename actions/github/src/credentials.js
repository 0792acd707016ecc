// What a broker result becomes in the job: which values are secrets, which
// environment variables later steps get, which outputs this step sets.
// Kept free of @actions/core so the plan can be checked on its own.

// plan turns a checked result into { kind, secrets, env, outputs, summary }.
// The variable names are the ones each cloud's own tools read, and the same
// as `ferry exchange --format env|github` exports, so a job can move between
// the CLI and this action without changing its steps.
export function plan(res, { region = '', outputCredentials = false, maskAccountID = false } = {}) {
  const secrets = [];
  const env = [];
  const outputs = [
    ['policy', res.policy ?? ''],
    ['request-id', res.request_id ?? ''],
  ];
  let kind;
  let summary;
  if (res.aws) {
    kind = 'aws';
    const a = res.aws;
    // The key id is not a secret on its own, but it is masked as
    // aws-actions/configure-aws-credentials does: it names the session in
    // CloudTrail and has no business in a public log.
    secrets.push(a.access_key_id, a.secret_access_key, a.session_token);
    const account = accountID(a.role_arn) || accountID(a.assumed_role_arn);
    // As configure-aws-credentials' mask-aws-account-id: the account id
    // then shows as *** wherever it appears, role ARNs included.
    if (maskAccountID && account) secrets.push(account);
    env.push(
      ['AWS_ACCESS_KEY_ID', a.access_key_id],
      ['AWS_SECRET_ACCESS_KEY', a.secret_access_key],
      ['AWS_SESSION_TOKEN', a.session_token],
      ['AWS_CREDENTIAL_EXPIRATION', a.expiration],
    );
    if (region) env.push(['AWS_REGION', region], ['AWS_DEFAULT_REGION', region]);
    outputs.push(
      ['aws-access-key-id', a.access_key_id],
      ['expiration', a.expiration],
      ['role-arn', a.role_arn ?? ''],
      ['aws-account-id', account],
      ['assumed-role-arn', a.assumed_role_arn ?? ''],
    );
    if (outputCredentials) {
      outputs.push(['aws-secret-access-key', a.secret_access_key], ['aws-session-token', a.session_token]);
    }
    summary = `AWS credentials for ${a.role_arn || 'the policy\'s role'}`;
  } else if (res.gcp) {
    kind = 'gcp';
    const g = res.gcp;
    secrets.push(g.access_token);
    env.push(['CLOUDSDK_AUTH_ACCESS_TOKEN', g.access_token], ['GOOGLE_OAUTH_ACCESS_TOKEN', g.access_token]);
    outputs.push(
      ['access-token', g.access_token],
      ['expiration', g.expires_at],
      ['service-account', g.service_account ?? ''],
    );
    summary = `a GCP access token for ${g.service_account || 'the policy\'s service account'}`;
  } else if (res.token) {
    kind = 'token';
    secrets.push(res.token.token);
    env.push(['FERRY_TOKEN', res.token.token]);
    outputs.push(['token', res.token.token], ['expiration', res.token.expires_at]);
    summary = 'a Ferry-signed token';
  } else if (res.github) {
    // GH_TOKEN is what the gh CLI and most GitHub tooling read, in place
    // of the personal access token this replaces.
    kind = 'github';
    const g = res.github;
    secrets.push(g.token);
    env.push(['GH_TOKEN', g.token]);
    const repos = Array.isArray(g.repositories) ? g.repositories.join(',') : '';
    outputs.push(['github-token', g.token], ['expiration', g.expires_at], ['repositories', repos]);
    summary = `a GitHub token for ${repos || 'the policy\'s repositories'}`;
  } else {
    throw new Error('result carries no credential');
  }
  outputs.push(['credential-type', kind]);
  // The release token ends the credential early (the post step keeps it in
  // its state, never in an output or the environment): masked like it.
  secrets.push(res.release_token);
  return { kind, secrets: secrets.filter(Boolean), env, outputs, summary };
}

// accountID is the 12-digit account of an IAM or STS ARN, or ''.
export function accountID(arn) {
  const m = /^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):/.exec(arn ?? '');
  return m ? m[1] : '';
}
