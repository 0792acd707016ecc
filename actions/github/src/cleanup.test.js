import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as awsconfig from './awsconfig.js';
import * as cache from './cache.js';
import { cleanup, issuedCredentials, leftToExpire, parseState } from './cleanup.js';

function res(id) {
  return {
    policy: 'deploy', request_id: id, release_token: 'rt-' + id,
    aws: { access_key_id: 'ASIA' + id, secret_access_key: 's', session_token: 't', expiration: '2026-11-23T11:00:00Z' },
  };
}

test('cleanup clears the variables, removes the files, and issuedCredentials names every credential handed out', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-post-'));
  const cfgFile = path.join(dir, 'aws-config');
  const cacheFile = path.join(dir, 'prod.cache.json');
  const profileCfg = path.join(dir, 'prod.json');
  fs.writeFileSync(profileCfg, '{}');
  awsconfig.upsertProfiles(cfgFile, [{ profile: 'prod', policy: 'deploy', command: 'x' }]);
  // The main step's credential r1, then a refresh r2.
  const first = cache.newEntry(res('r1'), Date.now(), null);
  cache.writeCache(cacheFile, cache.newEntry(res('r2'), Date.now(), first));
  const st = {
    version: 1, env: ['AWS_CONFIG_FILE', 'AWS_PROFILE'], dir, config_file: cfgFile, profiles: ['prod'], files: [profileCfg, cacheFile],
    credentials: [{ policy: 'deploy', request_id: 'r1', type: 'aws', expiration: 'e', destination: 'profile prod' }],
    releases: [{ request_id: 'r1', release_token: 'rt-from-state' }],
  };
  // The main step's credential with the release token it kept in its
  // state; the refresh with the one its credential_process cached.
  const issued = issuedCredentials(st);
  assert.deepEqual(issued.map(c => [c.request_id, c.release_token, c.destination]),
    [['r1', 'rt-from-state', 'profile prod'], ['r2', 'rt-r2', 'a refresh']]);
  const logs = [];
  leftToExpire(issued, m => logs.push(m));
  assert.ok(logs.some(l => l.includes('request r2') && l.includes('expires by itself')), logs.join('\n'));
  assert.ok(!logs.some(l => l.includes('rt-')), 'a release token reached the log');

  const cleared = [];
  cleanup(st, { exportVariable: (n, v) => cleared.push([n, v]), log: m => logs.push(m) });
  assert.deepEqual(cleared, [['AWS_CONFIG_FILE', ''], ['AWS_PROFILE', '']]);
  assert.equal(fs.existsSync(dir), false, 'the private directory is gone once empty');
});

test('a github credential carries the token release must present; others none', () => {
  const st = {
    version: 1, env: [], files: [],
    credentials: [
      { policy: 'checkout', request_id: 'g1', type: 'github', expiration: 'e', destination: 'environment' },
      { policy: 'artifacts', request_id: 't1', type: 'token', expiration: 'e', destination: 'ARTIFACTS_* variables' },
      { policy: 'old', request_id: 'o1', type: 'aws', expiration: 'e', destination: 'environment' },
    ],
    releases: [{ request_id: 'g1', release_token: 'rt-g', token: 'ghs_x' }, { request_id: 't1', release_token: 'rt-t' }],
  };
  assert.deepEqual(issuedCredentials(st).map(c => [c.request_id, c.release_token, c.token]),
    [['g1', 'rt-g', 'ghs_x'], ['t1', 'rt-t', ''], ['o1', '', '']]);
});

test('parseState takes nothing, or this version only', () => {
  assert.equal(parseState(''), null);
  assert.throws(() => parseState('{'), /not JSON/);
  assert.throws(() => parseState('{"version":7}'), /version 7/);
});
