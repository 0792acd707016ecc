import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as awsconfig from './awsconfig.js';

test('commandLine escapes what a shell, shlex or the Go SDK\'s ini reader would change', () => {
  assert.equal(awsconfig.commandLine(['/opt/node 24/bin/node', '/a/b.js'], 'linux'), '/opt/node\\ 24/bin/node /a/b.js');
  assert.equal(awsconfig.commandLine(['/a/"b" #c;$d`e\\f'], 'linux'), '/a/\\"b\\"\\ \\#c\\;\\$d\\`e\\\\f');
  for (const bad of ['/a\nb', '', '/a\tb', 'ends in a space ', 'ends in a no-break space\u00a0']) {
    assert.throws(() => awsconfig.commandLine([bad], 'linux'), /cannot write/, bad);
  }
  assert.equal(awsconfig.commandLine(['a space ', 'x'], 'linux'), 'a\\ space\\  x', 'only the last argument may not end in a blank');
  assert.equal(awsconfig.commandLine(['D:\\a\\_temp\\node.exe', 'C:\\Program Files\\x.js'], 'win32'), 'D:\\a\\_temp\\node.exe "C:\\Program Files\\x.js"');
  assert.throws(() => awsconfig.commandLine(['%TEMP%\\x'], 'win32'), /cannot write/);
});

test('profiles are added, replaced and removed without touching the others', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cfg-'));
  const file = path.join(dir, 'aws-config');
  awsconfig.upsertProfiles(file, [
    { profile: 'prod', policy: 'deploy-prod', command: '"node" "p.js"', region: 'eu-west-1' },
    { profile: 'default', policy: 'deploy-dev', command: '"node" "d.js"' },
  ]);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  let text = fs.readFileSync(file, 'utf8');
  assert.match(text, /^\[profile prod\]\n# ferry: policy deploy-prod\ncredential_process = "node" "p.js"\nregion = eu-west-1\n/m);
  assert.match(text, /^\[default\]\n# ferry: policy deploy-dev\ncredential_process = "node" "d.js"\n/m);

  // The same profile for the same policy is replaced; for another, refused.
  awsconfig.upsertProfiles(file, [{ profile: 'prod', policy: 'deploy-prod', command: '"node" "p2.js"' }]);
  text = fs.readFileSync(file, 'utf8');
  assert.equal(text.match(/\[profile prod\]/g).length, 1);
  assert.match(text, /p2\.js/);
  assert.match(text, /\[default\]/);
  assert.throws(() => awsconfig.upsertProfiles(file, [{ profile: 'prod', policy: 'other', command: 'x' }]),
    /aws-profile "prod" is already in .* for policy "deploy-prod"/);

  assert.equal(awsconfig.removeProfiles(file, ['prod']), 1);
  assert.doesNotMatch(fs.readFileSync(file, 'utf8'), /prod/);
  assert.equal(awsconfig.removeProfiles(file, ['default']), 0);
  assert.equal(fs.existsSync(file), false, 'the file goes with its last profile');
  fs.rmSync(dir, { recursive: true });
});

test('a profile the shared credentials file also defines is found', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-creds-'));
  const file = path.join(dir, 'credentials');
  fs.writeFileSync(file, '[prod]\naws_access_key_id = AKIA\n[ other ]\n');
  assert.deepEqual(awsconfig.shadowedProfiles({ AWS_SHARED_CREDENTIALS_FILE: file }, ['prod', 'stage', 'other']),
    { file, names: ['prod', 'other'] });
  assert.deepEqual(awsconfig.shadowedProfiles({ AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'none') }, ['prod']).names, []);
  fs.rmSync(dir, { recursive: true });
});
