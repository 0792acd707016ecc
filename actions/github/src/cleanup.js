// The post step: at the job's end, take back what the main step handed
// out. First every credential the step or a later refresh obtained is
// released at the broker (release.js; post.js runs it), then every
// variable the step exported is set to empty for the steps that still run
// (other actions' post steps), and its profiles, profile configs and
// credential caches are deleted from RUNNER_TEMP.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as awsconfig from './awsconfig.js';
import * as cache from './cache.js';

export const STATE_KEY = 'ferry';
export const STATE_VERSION = 1;

// parseState reads what the main step saved; '' means it saved nothing
// (it failed before handing anything out).
export function parseState(raw) {
  if (!raw) return null;
  let st;
  try {
    st = JSON.parse(raw);
  } catch {
    throw new Error('the main step\'s saved state is not JSON');
  }
  if (st?.version !== STATE_VERSION) throw new Error(`the main step saved state version ${st?.version}, not ${STATE_VERSION}`);
  return st;
}

// issuedCredentials lists every credential the step handed out: the ones
// the main step got, and every refresh that an aws-profile's
// credential_process made since (from each cache's history). Each carries
// what release needs, when the step kept it: release_token, and token for
// kinds whose provider must be shown the credential (github). Those two
// are secrets: the caller masks them and never prints them.
export function issuedCredentials(st) {
  const releases = new Map((st.releases ?? []).map(r => [r.request_id, r]));
  const out = st.credentials.map(c => {
    const r = releases.get(c.request_id);
    return { ...c, release_token: r?.release_token ?? '', token: r?.token ?? '' };
  });
  const known = new Set(out.map(c => c.request_id));
  for (const f of st.files.filter(f => f.endsWith('.cache.json'))) {
    let entry = null;
    try {
      entry = cache.readCache(f);
    } catch {
      // unreadable: the ids it held are lost, the credentials still expire
    }
    for (const h of entry?.history ?? []) {
      if (h.request_id && !known.has(h.request_id)) {
        known.add(h.request_id);
        out.push({
          policy: entry.policy, request_id: h.request_id, type: 'aws', expiration: h.expiration, destination: 'a refresh',
          release_token: h.release_token ?? '', token: '',
        });
      }
    }
  }
  return out;
}

// leftToExpire names each credential that is not released (the release
// input is false), with when it expires.
export function leftToExpire(issued, log) {
  for (const c of issued) {
    log(`Ferry: the ${c.type} credential of policy ${JSON.stringify(c.policy)} (request ${c.request_id}, ${c.destination}) expires by itself at ${c.expiration}.`);
  }
}

// cleanup undoes the main step's hand-out, once its credentials have been
// released (the caches name the refreshes to release, so they go after).
// exportVariable and log come from @actions/core (passed in so tests can
// run this without a runner).
export function cleanup(st, { exportVariable, log }) {

  let removed = 0;
  if (st.config_file && st.profiles.length) {
    const left = awsconfig.removeProfiles(st.config_file, st.profiles);
    removed += st.profiles.length;
    if (left > 0) log(`Ferry: ${left} profile(s) of another Ferry step stay in ${st.config_file} until its post step.`);
  }
  for (const f of st.files) fs.rmSync(f, { force: true });
  for (const f of st.files) fs.rmSync(`${f}.lock`, { force: true });
  if (st.dir) {
    try {
      fs.rmdirSync(st.dir); // only when empty: another Ferry step may still use it
    } catch {
      // not empty, or gone
    }
  }
  for (const name of st.env) exportVariable(name, '');
  log(`Ferry: cleared ${st.env.length} variable(s)${st.env.length ? ` (${st.env.join(', ')})` : ''} and removed ${removed} profile(s) and ${st.files.length} file(s)${st.dir ? ` from ${path.basename(st.dir)}` : ''}.`);
}
