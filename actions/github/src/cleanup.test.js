import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as awsconfig from './awsconfig.js';
import * as cache from './cache.js';
import { cleanup, issuedCredentials, parseState } from './cleanup.js';

function res(id) {
  return { policy: 'deploy', request_id: id, aws: { access_key_id: 'ASIA' + id, secret_access_key: 's', session_token: 't', expiration: '2026-11-23T11:00:00Z' } };
}

test('cleanup clears the variables, removes the files, and names every credential handed out', () => {
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
  };
  assert.deepEqual(issuedCredentials(st).map(c => c.request_id), ['r1', 'r2']);

  const cleared = [];
  const logs = [];
  const issued = cleanup(st, { exportVariable: (n, v) => cleared.push([n, v]), log: m => logs.push(m) });
  assert.deepEqual(cleared, [['AWS_CONFIG_FILE', ''], ['AWS_PROFILE', '']]);
  assert.equal(issued.length, 2);
  assert.equal(fs.existsSync(dir), false, 'the private directory is gone once empty');
  assert.ok(logs.some(l => l.includes('request r2')), logs.join('\n'));
});

test('parseState takes nothing, or this version only', () => {
  assert.equal(parseState(''), null);
  assert.throws(() => parseState('{'), /not JSON/);
  assert.throws(() => parseState('{"version":7}'), /version 7/);
});
