// Release at the job's end: POST /v1/release for every credential the step
// handed out, so that it stops working when the job is done instead of
// when its lifetime runs out. The same transport rules as the exchange
// (https, or http to loopback; no redirect; a bounded number of tries on
// 429, 502, 503 and network errors). A release that fails is a warning,
// never a failed job: the credential still expires by itself.
//
// Only broker.js is imported (it imports nothing), so `node --test` runs
// the tests of this file without node_modules.

import { BrokerError, MAX_WAIT_SECONDS, apiURL, checkBrokerURL, isTransportError, parseError, parseRetryAfter, postOnce } from './broker.js';

// What may pass on another try: the broker's rate limit, a provider that
// failed to end the credential (GitHub down: nothing was marked, the
// contract says try again), the broker's store unreachable.
const RETRYABLE = new Set([429, 502, 503]);

// How long all the releases of one post step may spend waiting between
// tries. Each credential gets at least one try whatever is left.
export const RELEASE_BUDGET_MS = 60_000;

// releaseBody is what POST /v1/release takes: the credential itself only
// for kinds whose provider ends it only when shown it (github).
export function releaseBody(r) {
  const body = { request_id: r.request_id, release_token: r.release_token };
  if (r.token) body.token = r.token;
  return JSON.stringify(body);
}

// releaseOne ends one credential and returns the broker's answer
// ({request_id, released, revoked, detail}), or throws saying why not.
// Nothing it throws or logs carries the release token or the credential.
export async function releaseOne({ client, url, release, maxAttempts, log, sleep, deadline = Infinity, now = Date.now }) {
  const body = releaseBody(release);
  let lastErr;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    let wait = null;
    try {
      const res = await postOnce(client, url, body);
      if (res.status === 200) {
        let parsed;
        try {
          parsed = JSON.parse(res.text);
        } catch {
          parsed = null;
        }
        if (!parsed || parsed.released !== true) throw new Error('the broker answered 200 with a body that is not a release');
        return parsed;
      }
      if (res.status >= 300 && res.status < 400) {
        throw new Error(`the broker answered HTTP ${res.status} (a redirect); the release token is not sent on to another address`);
      }
      const err = parseError(res.status, res.text);
      if (!RETRYABLE.has(res.status)) throw err;
      lastErr = err;
      wait = parseRetryAfter(res.headers['retry-after']);
    } catch (e) {
      if (e instanceof BrokerError || !isTransportError(e)) throw e;
      // A release is idempotent: trying again after a lost answer is safe.
      lastErr = new Error(`cannot reach the broker: ${e.message}`);
    }
    if (attempt === maxAttempts) break;
    if (wait === null) wait = Math.min(2 ** (attempt - 1), MAX_WAIT_SECONDS);
    if (wait > MAX_WAIT_SECONDS) {
      throw new Error(`${lastErr.message}; the broker asks to retry after ${wait}s, longer than this step waits (${MAX_WAIT_SECONDS}s)`);
    }
    if (now() + wait * 1000 > deadline) {
      throw new Error(`${lastErr.message}; no time left to try again (the post step spends at most ${RELEASE_BUDGET_MS / 1000}s waiting)`);
    }
    log(`Ferry: releasing request ${release.request_id}: ${lastErr.message}; retrying in ${wait}s (attempt ${attempt + 1} of ${maxAttempts})`);
    await sleep(wait * 1000);
  }
  throw lastErr;
}

// oneLine keeps a broker's words on one line of the job's log.
function oneLine(s) {
  return String(s ?? '').replace(/\s+/g, ' ').trim();
}

function what(c) {
  return `the ${c.type} credential of policy ${JSON.stringify(c.policy)} (request ${c.request_id}${c.destination ? `, ${c.destination}` : ''})`;
}

// releaseAll releases each credential of issued (see cleanup.js's
// issuedCredentials) at the broker baseURL, one after the other, and says
// what became of each: info for a release, warn for a failure. It returns
// how many were released and how many failed; it never throws.
export async function releaseAll({ client, baseURL, issued, maxAttempts = 3, info, warn, sleep, now = Date.now, budgetMs = RELEASE_BUDGET_MS }) {
  const out = { released: 0, failed: 0 };
  let url = '';
  let urlErr = null;
  try {
    url = apiURL(checkBrokerURL(baseURL), '/v1/release');
  } catch (e) {
    urlErr = e;
  }
  const deadline = now() + budgetMs;
  for (const c of issued) {
    if (!c.release_token) {
      info(`Ferry: ${what(c)} has no release token (a broker from before release at job end); it expires by itself at ${c.expiration}.`);
      continue;
    }
    try {
      if (urlErr) throw urlErr;
      const res = await releaseOne({ client, url, release: c, maxAttempts, log: warn, sleep, deadline, now });
      out.released++;
      // The broker's detail says what became of it (ended at the provider,
      // left to expire, expired already) and until when.
      const detail = oneLine(res.detail);
      let how = res.revoked ? ': it no longer works' : '';
      if (detail) how += ` (${detail})`;
      else if (!res.revoked) how += `; it expires by itself at ${c.expiration}`;
      info(`Ferry: released ${what(c)}${how}.`);
    } catch (e) {
      out.failed++;
      warn(`Ferry: could not release ${what(c)}: ${oneLine(e instanceof Error ? e.message : e)}; it expires by itself at ${c.expiration}.`);
    }
  }
  return out;
}
