import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as cache from './cache.js';

const MIN = 60 * 1000;
const t0 = Date.parse('2026-11-23T10:00:00Z');

function result(lifetimeMin, id = 'r1') {
  return {
    policy: 'deploy', request_id: id,
    aws: {
      access_key_id: `ASIA${id}`, secret_access_key: 'se+cr/et=', session_token: 'to+ken/==',
      expiration: new Date(t0 + lifetimeMin * MIN).toISOString(),
    },
  };
}

test('the refresh margin is 15 minutes, or half a shorter credential\'s life', () => {
  const table = [[60, 15], [30, 15], [20, 10], [15, 7.5], [2, 1]];
  for (const [life, margin] of table) {
    assert.equal(cache.refreshMarginMs(cache.newEntry(result(life), t0, null)), margin * MIN, `${life}m`);
  }
});

test('a cached credential is handed back until its margin, then refreshed', () => {
  // [lifetime, minutes later, still fresh?]
  const table = [
    [60, 0, true], [60, 44, true], [60, 45, false], [60, 59, false], [60, 61, false],
    // A 15-minute grant: botocore asks on every use from the start; the
    // cache answers from itself for the first 7.5 minutes.
    [15, 0, true], [15, 1, true], [15, 7, true], [15, 7.5, false], [15, 14, false],
  ];
  for (const [life, later, want] of table) {
    const e = cache.newEntry(result(life), t0, null);
    assert.equal(cache.fresh(e, 'deploy', t0 + later * MIN), want, `${life}m credential after ${later}m`);
  }
  const e = cache.newEntry(result(60), t0, null);
  assert.equal(cache.fresh(e, 'other-policy', t0), false, 'an entry of another policy');
  assert.equal(cache.fresh(null, 'deploy', t0), false);
  assert.equal(cache.unexpired(e, t0 + 59 * MIN), true);
  assert.equal(cache.unexpired(e, t0 + 60 * MIN), false);
});

test('the cache file round-trips every character and is private', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cache-'));
  const file = path.join(dir, 'p.cache.json');
  const e = cache.newEntry(result(60), t0, null);
  cache.writeCache(file, e);
  assert.deepEqual(cache.readCache(file), e);
  assert.equal(cache.readCache(file).credential.SecretAccessKey, 'se+cr/et=');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  // A later credential keeps the history of the earlier ones.
  const next = cache.newEntry(result(60, 'r2'), t0 + 50 * MIN, e);
  assert.deepEqual(next.history.map(h => h.request_id), ['r1', 'r2']);
  assert.deepEqual(next.credential, {
    Version: 1, AccessKeyId: 'ASIAr2', SecretAccessKey: 'se+cr/et=', SessionToken: 'to+ken/==', Expiration: result(60).aws.expiration,
  });
  fs.rmSync(dir, { recursive: true });
});

test('an unreadable or foreign cache is a miss, not an error', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cache-'));
  const file = path.join(dir, 'c.json');
  assert.equal(cache.readCache(file), null, 'absent');
  for (const text of ['{', '{"version":2}', JSON.stringify({ ...cache.newEntry(result(60), t0, null), version: 9 }),
    JSON.stringify({ ...cache.newEntry(result(60), t0, null), credential: { AccessKeyId: 'x' } })]) {
    fs.writeFileSync(file, text);
    assert.equal(cache.readCache(file), null, text);
  }
  fs.rmSync(dir, { recursive: true });
});

test('withLock lets one process at a time in, and takes over a stale lock', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-lock-'));
  const file = path.join(dir, 'c.json');
  const order = [];
  const slow = cache.withLock(file, async () => {
    order.push('a in');
    await new Promise(r => setTimeout(r, 150));
    order.push('a out');
  });
  await new Promise(r => setTimeout(r, 20));
  await cache.withLock(file, async () => order.push('b in'));
  await slow;
  assert.deepEqual(order, ['a in', 'a out', 'b in']);
  assert.equal(fs.existsSync(`${file}.lock`), false, 'the lock is released');

  // A lock left by a process that died long ago.
  fs.writeFileSync(`${file}.lock`, '99999');
  const old = new Date(Date.now() - cache.LOCK_STALE_MS - 1000);
  fs.utimesSync(`${file}.lock`, old, old);
  assert.equal(await cache.withLock(file, async () => 'got it'), 'got it');
  fs.rmSync(dir, { recursive: true });
});

test('privateDir makes a directory only its owner can enter', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-dir-'));
  const dir = cache.privateDir(path.join(base, 'ferry'));
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  fs.writeFileSync(path.join(base, 'file'), '');
  assert.throws(() => cache.privateDir(path.join(base, 'file')), /EEXIST|not a directory/);
  fs.rmSync(base, { recursive: true });
});
