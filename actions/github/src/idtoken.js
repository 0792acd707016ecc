// Requesting the job's OIDC token from the runner as @actions/core does
// in getIDToken, without its side effects: core prints a mask command
// to stdout, and the credential_process entry point's stdout belongs to
// the AWS SDK that started it. ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN are
// in every step's environment when the job has `id-token: write`.

// requestIDToken fetches a fresh token for audience with client (an
// @actions/http-client HttpClient).
export async function requestIDToken(client, env, audience) {
  const base = env.ACTIONS_ID_TOKEN_REQUEST_URL;
  const bearer = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
  if (!base || !bearer) {
    throw new Error('no ID token: ACTIONS_ID_TOKEN_REQUEST_URL is not in this process\'s environment ' +
      '(give the job `permissions: id-token: write`; a container started by `docker run` does not inherit it)');
  }
  // The runner's URL already carries a query (api-version).
  const url = audience ? `${base}&audience=${encodeURIComponent(audience)}` : base;
  let res;
  try {
    res = await client.get(url, { Authorization: `Bearer ${bearer}`, Accept: 'application/json' });
  } catch (e) {
    throw new Error(`could not reach the runner's token service: ${e.message}`);
  }
  const body = await res.readBody();
  const status = res.message.statusCode;
  if (status !== 200) {
    throw new Error(`the runner's token service answered HTTP ${status} for audience ${JSON.stringify(audience)}`);
  }
  let value;
  try {
    value = JSON.parse(body).value;
  } catch {
    // fall through
  }
  if (typeof value !== 'string' || value === '') throw new Error('the runner\'s token service answered without a token');
  return value;
}
