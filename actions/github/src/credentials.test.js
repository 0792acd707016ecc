import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accountID, plan } from './credentials.js';

const aws = {
  policy: 'deploy', request_id: 'r1', expires_at: '2026-11-23T10:15:00Z',
  aws: { access_key_id: 'ASIAKEY', secret_access_key: 'SECRET', session_token: 'SESSION', expiration: '2026-11-23T10:15:00Z', role_arn: 'arn:aws:iam::1:role/d' },
};

test('an aws plan masks the key id, secret and session token', () => {
  const p = plan(aws);
  assert.deepEqual(p.secrets, ['ASIAKEY', 'SECRET', 'SESSION']);
  assert.deepEqual(p.env.map(([n]) => n), ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_CREDENTIAL_EXPIRATION']);
  const outputs = Object.fromEntries(p.outputs);
  assert.equal(outputs['aws-access-key-id'], 'ASIAKEY');
  assert.equal(outputs['aws-secret-access-key'], undefined);
  assert.equal(outputs['credential-type'], 'aws');
});

test('aws-region and output-credentials add what they say', () => {
  const p = plan(aws, { region: 'eu-west-1', outputCredentials: true });
  const env = Object.fromEntries(p.env);
  assert.equal(env.AWS_REGION, 'eu-west-1');
  assert.equal(env.AWS_DEFAULT_REGION, 'eu-west-1');
  const outputs = Object.fromEntries(p.outputs);
  assert.equal(outputs['aws-secret-access-key'], 'SECRET');
  assert.equal(outputs['aws-session-token'], 'SESSION');
});

test('every value a plan exports or outputs as a credential is a secret', () => {
  const results = [
    aws,
    { policy: 'g', request_id: 'r', gcp: { access_token: 'ya29.x', expires_at: 'e', service_account: 'sa@p.iam.gserviceaccount.com' } },
    { policy: 't', request_id: 'r', token: { token: 'eyJ.a.b', expires_at: 'e' } },
    { policy: 'h', request_id: 'r', github: { token: 'ghs_x', expires_at: 'e', repositories: ['acme/app'], permissions: { contents: 'read' } } },
  ];
  for (const res of results) {
    const p = plan(res, { outputCredentials: true });
    const credentialNames = /^(AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|CLOUDSDK_AUTH_ACCESS_TOKEN|GOOGLE_OAUTH_ACCESS_TOKEN|FERRY_TOKEN|GH_TOKEN|aws-access-key-id|aws-secret-access-key|aws-session-token|access-token|token|github-token)$/;
    for (const [name, value] of [...p.env, ...p.outputs]) {
      if (credentialNames.test(name)) assert.ok(p.secrets.includes(value), `${name} is not masked`);
    }
  }
});

test('a github plan exports the token as GH_TOKEN, masked, and names its repositories', () => {
  const p = plan({ policy: 'h', request_id: 'r', github: { token: 'ghs_x', expires_at: 'e', repositories: ['acme/app', 'acme/infra'] } });
  assert.deepEqual(p.secrets, ['ghs_x']);
  assert.deepEqual(p.env, [['GH_TOKEN', 'ghs_x']]);
  const outputs = Object.fromEntries(p.outputs);
  assert.equal(outputs['credential-type'], 'github');
  assert.equal(outputs.repositories, 'acme/app,acme/infra');
});

test('a result with no credential has no plan', () => {
  assert.throws(() => plan({ policy: 'p' }), /no credential/);
});

test('mask-aws-account-id masks the role\'s account, and the account id is an output', () => {
  const plain = plan(aws);
  assert.equal(Object.fromEntries(plain.outputs)['aws-account-id'], '', 'arn:aws:iam::1:role/d names no 12-digit account');
  const res = { ...aws, aws: { ...aws.aws, role_arn: 'arn:aws:iam::123456789012:role/deploy' } };
  assert.ok(!plan(res).secrets.includes('123456789012'));
  assert.ok(plan(res, { maskAccountID: true }).secrets.includes('123456789012'));
  assert.equal(Object.fromEntries(plan(res).outputs)['aws-account-id'], '123456789012');
  assert.equal(accountID('arn:aws-us-gov:sts::210987654321:assumed-role/d/s'), '210987654321');
  assert.equal(accountID('not an arn'), '');
});

test('secrets with + / = reach the environment unchanged', () => {
  const odd = { ...aws, aws: { ...aws.aws, secret_access_key: 'wJal+rXU/tnFE=MI', session_token: 'FwoG+ZXIv/YXdz==' } };
  const env = Object.fromEntries(plan(odd).env);
  assert.equal(env.AWS_SECRET_ACCESS_KEY, 'wJal+rXU/tnFE=MI');
  assert.equal(env.AWS_SESSION_TOKEN, 'FwoG+ZXIv/YXdz==');
});
