// Talking to a Ferry broker: POST /v1/exchange, with bounded retries.
// (POST /v1/release, at the job's end, is release.js, on the same rules.)
// Nothing here logs a token or a credential; callers mask before printing.
// No imports: the HTTP client is passed in, so `node --test` runs the unit
// tests of this file without node_modules.

// The most one back-off may last. A broker that asks for longer is
// overloaded for longer than a CI step should sit idle, so we stop instead.
export const MAX_WAIT_SECONDS = 30;

// Only these statuses mean "the same request may pass later": the contract
// answers 429 before any token work and 503 when issuer keys are
// unreachable, so the job's token was not spent.
const RETRYABLE = new Set([429, 503]);

// How much of a broker response is read; a Ferry answer is a few KiB.
const MAX_BODY = 1 << 20;

const LOOPBACK = /^(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])$/i;

// checkBrokerURL refuses URLs that would send the job's ID token where
// anyone on the path could read it: plain http is allowed only to loopback
// (a broker run beside the job, as in tests).
export function checkBrokerURL(raw) {
  let u;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`input url ${JSON.stringify(raw)} is not a URL`);
  }
  if (u.username || u.password) {
    throw new Error('input url must not carry credentials');
  }
  if (u.protocol === 'http:' && !LOOPBACK.test(u.hostname)) {
    throw new Error(`input url must use https (plain http is allowed only to localhost): ${u.origin}`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new Error(`input url must use https, not ${u.protocol}`);
  }
  if (u.search || u.hash) {
    throw new Error('input url must not have a query or fragment');
  }
  return u;
}

// exchangeURL joins the broker's base URL (which may have a path, when the
// broker sits behind a prefix) with the API path.
export function exchangeURL(base) {
  return apiURL(base, '/v1/exchange');
}

// apiURL joins base and one of the broker's API paths.
export function apiURL(base, apiPath) {
  const u = new URL(base.href);
  u.pathname = u.pathname.replace(/\/+$/, '') + apiPath;
  return u.href;
}

// parseRetryAfter reads Retry-After as delta-seconds or an HTTP date;
// anything else is null so the caller falls back to its own back-off.
export function parseRetryAfter(value, now = Date.now()) {
  if (value === undefined || value === null) return null;
  const v = String(value).trim();
  if (/^\d+$/.test(v)) return Number(v);
  // An HTTP date names its day and month; Date.parse alone would also take
  // "-1" (the year 1 BC) and similar.
  if (!/^[A-Za-z]{3}, /.test(v)) return null;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

// BrokerError is a refusal in the contract's error shape, or an answer that
// is not one.
export class BrokerError extends Error {
  constructor(status, code, description, requestID) {
    let msg = `${code}: ${description}`;
    if (requestID) msg += ` (HTTP ${status}, request_id ${requestID})`;
    else msg += ` (HTTP ${status})`;
    super(msg);
    this.name = 'BrokerError';
    this.status = status;
    this.code = code;
    this.description = description;
    this.requestID = requestID;
  }
}

export function parseError(status, body) {
  try {
    const e = JSON.parse(body);
    if (e && typeof e.error === 'string' && e.error) {
      return new BrokerError(status, e.error, String(e.error_description ?? ''), e.request_id ? String(e.request_id) : '');
    }
  } catch {
    // not JSON: a proxy or load balancer answered, not Ferry
  }
  return new BrokerError(status, 'http_error', `the broker answered HTTP ${status} without a Ferry error body (a proxy in the way?)`, '');
}

// checkResult makes sure a 200 carries exactly one credential with the
// fields the action will use, so a half-filled answer fails loudly rather
// than exporting empty variables.
export function checkResult(res) {
  if (!res || typeof res !== 'object') throw new Error('broker answered 200 with a body that is not a result');
  const need = {
    aws: ['access_key_id', 'secret_access_key', 'session_token', 'expiration'],
    gcp: ['access_token', 'expires_at'],
    token: ['token', 'expires_at'],
    github: ['token', 'expires_at'],
  };
  const kinds = Object.keys(need).filter(k => res[k] && typeof res[k] === 'object');
  if (kinds.length !== 1) {
    throw new Error(`broker answered 200 with ${kinds.length} credentials (want exactly one of ${Object.keys(need).join(', ')})`);
  }
  for (const f of need[kinds[0]]) {
    if (typeof res[kinds[0]][f] !== 'string' || res[kinds[0]][f] === '') {
      throw new Error(`broker answered 200 without ${kinds[0]}.${f}`);
    }
  }
  return kinds[0];
}

export async function postOnce(client, url, body) {
  const res = await client.post(url, body, { 'Content-Type': 'application/json', Accept: 'application/json' });
  const text = await res.readBody();
  if (text.length > MAX_BODY) {
    throw new BrokerError(res.message.statusCode, 'http_error', 'the broker answer is too large', '');
  }
  return { status: res.message.statusCode ?? 0, headers: res.message.headers, text };
}

// exchange POSTs {policy, token, duration} with client (an
// @actions/http-client HttpClient) and returns the parsed result.
// getToken is called for the first attempt and again after a transport
// error (the broker may have spent a token whose answer was lost), so a
// retry never fails as a replay.
export async function exchange({ client, url, policy, duration, getToken, maxAttempts, log, sleep }) {
  let token = null;
  let lastErr;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    if (token === null) token = await getToken();
    const body = JSON.stringify(duration ? { policy, token, duration } : { policy, token });
    let wait;
    try {
      const res = await postOnce(client, url, body);
      if (res.status === 200) {
        let parsed;
        try {
          parsed = JSON.parse(res.text);
        } catch {
          throw new Error('broker answered 200 with a body that is not JSON');
        }
        checkResult(parsed);
        return parsed;
      }
      const err = parseError(res.status, res.text);
      if (!RETRYABLE.has(res.status)) throw err;
      lastErr = err;
      wait = parseRetryAfter(res.headers['retry-after']);
      if (wait !== null && wait > MAX_WAIT_SECONDS) {
        throw new Error(`${err.message}; the broker asks to retry after ${wait}s, longer than this step waits (${MAX_WAIT_SECONDS}s)`);
      }
    } catch (e) {
      if (e instanceof BrokerError || !isTransportError(e)) throw e;
      lastErr = new Error(`cannot reach the broker: ${e.message}`);
      token = null;
    }
    if (attempt === maxAttempts) break;
    if (wait === undefined || wait === null) wait = Math.min(2 ** (attempt - 1), MAX_WAIT_SECONDS);
    log(`Ferry: ${lastErr.message}; retrying in ${wait}s (attempt ${attempt + 1} of ${maxAttempts})`);
    await sleep(wait * 1000);
  }
  throw lastErr;
}

// isTransportError tells network failures (worth another try) from our own
// errors (not).
export function isTransportError(e) {
  return Boolean(e && (e.code || /socket|timeout|ECONN|EAI_AGAIN|network/i.test(String(e.message))));
}
