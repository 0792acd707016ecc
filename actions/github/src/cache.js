// The per-job credential cache behind an aws-profile's credential_process.
//
// AWS SDKs ask the process again well before a credential expires:
// botocore (the aws CLI, boto3) whenever fewer than 15 minutes remain, so
// for a 15-minute grant on every use; aws-sdk-go-v2 at expiry, or earlier
// by its ExpiryWindow. Exchanging on every ask would spend one grant per
// command (and, on GitLab, replay the job's single token). The cache hands
// back the credential it holds while it has more than its refresh margin
// left, and exchanges only after:
//
//   margin = min(15 minutes, half the credential's lifetime)
//
// A 1-hour credential is renewed when botocore's 15-minute window opens; a
// 15-minute one after 7.5 minutes, so it never reaches an SDK with less
// than half its life. The same file format and rule are used by
// `ferry exchange --format credential-process --cache` (internal/client).
//
// Node builtins only: `node --test` runs the tests without node_modules.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export const CACHE_VERSION = 1;
export const MAX_MARGIN_MS = 15 * 60 * 1000;

// How long a lock may be held before another process takes it over: one
// exchange with every retry fits well inside.
export const LOCK_STALE_MS = 2 * 60 * 1000;
const LOCK_POLL_MS = 50;

// refreshMarginMs is how much life a cached credential must have left to be
// handed back.
export function refreshMarginMs(entry) {
  const lifetime = Date.parse(entry.credential.Expiration) - Date.parse(entry.obtained_at);
  if (!(lifetime > 0)) return 0;
  return Math.min(MAX_MARGIN_MS, lifetime / 2);
}

// fresh reports whether entry may be handed back at now (ms since epoch):
// it is for policy and has more than its margin left.
export function fresh(entry, policy, now) {
  if (!entry || entry.policy !== policy) return false;
  const exp = Date.parse(entry.credential.Expiration);
  return exp - now > refreshMarginMs(entry);
}

// unexpired reports whether entry's credential still works at now, for the
// fallback when a refresh fails.
export function unexpired(entry, now) {
  return Boolean(entry) && Date.parse(entry.credential.Expiration) > now;
}

// newEntry turns a checked broker result with an aws grant into a cache
// entry. history keeps every credential this cache has held, for the post
// step: its non-secret ids, and the release token that ends it at the job's
// end (a secret, as is the whole file: 0600 in a 0700 directory).
export function newEntry(res, now, previous) {
  const a = res.aws;
  const history = previous?.policy === res.policy && Array.isArray(previous.history) ? previous.history.slice(-50) : [];
  const h = { request_id: res.request_id ?? '', access_key_id: a.access_key_id, expiration: a.expiration };
  if (res.release_token) h.release_token = res.release_token;
  history.push(h);
  return {
    version: CACHE_VERSION,
    policy: res.policy,
    request_id: res.request_id ?? '',
    obtained_at: new Date(now).toISOString(),
    credential: credentialProcessJSON(a),
    history,
  };
}

// credentialProcessJSON is what the AWS SDKs read from a credential_process.
export function credentialProcessJSON(a) {
  return {
    Version: 1,
    AccessKeyId: a.access_key_id,
    SecretAccessKey: a.secret_access_key,
    SessionToken: a.session_token,
    Expiration: a.expiration,
  };
}

// readCache returns the entry in file, or null when there is none or it
// cannot be used (another version, a torn write): a cache miss, never an
// error, since the worst it costs is one exchange.
export function readCache(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw new Error(`read credential cache ${file}: ${e.message}`);
  }
  try {
    const entry = JSON.parse(text);
    const c = entry?.credential;
    if (entry?.version !== CACHE_VERSION || typeof entry.policy !== 'string' || !c ||
      !c.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || Number.isNaN(Date.parse(c.Expiration)) ||
      Number.isNaN(Date.parse(entry.obtained_at))) {
      return null;
    }
    return entry;
  } catch {
    return null;
  }
}

// writeCache replaces file atomically, readable by this user only.
export function writeCache(file, entry) {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    fs.writeFileSync(tmp, JSON.stringify(entry) + '\n', { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.unlinkSync(tmp); } catch { /* already gone */ }
    throw new Error(`write credential cache ${file}: ${e.message}`);
  }
}

// withLock runs fn while holding file.lock, so processes the SDKs start at
// the same moment exchange once between them, not once each.
export async function withLock(file, fn, { now = Date.now, sleep = ms => new Promise(r => setTimeout(r, ms)) } = {}) {
  const lock = `${file}.lock`;
  const start = now();
  for (;;) {
    try {
      const fd = fs.openSync(lock, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw new Error(`lock credential cache ${file}: ${e.message}`);
    }
    let age = 0;
    try {
      age = Date.now() - fs.statSync(lock).mtimeMs;
    } catch {
      continue; // released between our open and stat: try again at once
    }
    if (age > LOCK_STALE_MS) {
      // Its holder died mid-exchange; the cache itself is written
      // atomically, so taking the lock over loses nothing.
      try { fs.unlinkSync(lock); } catch { /* someone else took it over */ }
      continue;
    }
    if (now() - start > LOCK_STALE_MS + 10_000) {
      throw new Error(`credential cache ${file} stayed locked for ${Math.round((now() - start) / 1000)}s`);
    }
    await sleep(LOCK_POLL_MS);
  }
  try {
    return await fn();
  } finally {
    try { fs.unlinkSync(lock); } catch { /* gone already */ }
  }
}

// privateDir makes (or checks) a directory only this user can enter: the
// cache and the AWS config live there, never in the workspace.
export function privateDir(dir) {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new Error(`${dir} belongs to another user`);
  }
  if (process.platform !== 'win32') fs.chmodSync(dir, 0o700);
  return path.resolve(dir);
}
