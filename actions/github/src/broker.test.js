// Unit tests of the pure parts of broker.js; the action as a whole is
// tested end to end against a real broker by actions/github_test.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkBrokerURL, checkResult, exchangeURL, parseRetryAfter } from './broker.js';

test('checkBrokerURL allows https anywhere and http only to loopback', () => {
  for (const ok of ['https://ferry.example.com', 'https://ferry.example.com:8443/prefix/', 'http://127.0.0.1:8080',
    'http://localhost:9', 'http://[::1]:8080', 'http://127.1.2.3']) {
    assert.doesNotThrow(() => checkBrokerURL(ok), ok);
  }
  const bad = {
    'http://ferry.example.com': /must use https/,
    'http://127.0.0.1.nip.io': /must use https/,
    'http://localhost.example.com': /must use https/,
    'ftp://ferry.example.com': /must use https/,
    'https://u:p@ferry.example.com': /credentials/,
    'https://ferry.example.com/?policy=x': /query or fragment/,
    'ferry.example.com': /not a URL/,
    '': /not a URL/,
  };
  for (const [url, want] of Object.entries(bad)) {
    assert.throws(() => checkBrokerURL(url), want, url);
  }
});

test('exchangeURL keeps a path prefix and joins exactly one slash', () => {
  assert.equal(exchangeURL(checkBrokerURL('https://f.example')), 'https://f.example/v1/exchange');
  assert.equal(exchangeURL(checkBrokerURL('https://f.example/')), 'https://f.example/v1/exchange');
  assert.equal(exchangeURL(checkBrokerURL('https://f.example/ferry//')), 'https://f.example/ferry/v1/exchange');
});

test('parseRetryAfter reads seconds and HTTP dates, and nothing else', () => {
  const now = Date.parse('2026-11-23T10:00:00Z');
  assert.equal(parseRetryAfter('3', now), 3);
  assert.equal(parseRetryAfter(' 0 ', now), 0);
  assert.equal(parseRetryAfter('Mon, 23 Nov 2026 10:00:05 GMT', now), 5);
  assert.equal(parseRetryAfter('Mon, 23 Nov 2026 09:59:00 GMT', now), 0);
  assert.equal(parseRetryAfter(undefined, now), null);
  assert.equal(parseRetryAfter('soon', now), null);
  assert.equal(parseRetryAfter('-1', now), null);
});

test('checkResult wants exactly one complete credential', () => {
  const aws = { access_key_id: 'ASIA1', secret_access_key: 's', session_token: 't', expiration: '2026-11-23T10:15:00Z' };
  assert.equal(checkResult({ aws }), 'aws');
  assert.equal(checkResult({ token: { token: 'eyJ', expires_at: 'x' } }), 'token');
  assert.equal(checkResult({ github: { token: 'ghs_x', expires_at: 'x' } }), 'github');
  assert.throws(() => checkResult({ github: { expires_at: 'x' } }), /github.token/);
  assert.equal(checkResult({ gcp: { access_token: 'ya29', expires_at: 'x' } }), 'gcp');
  assert.throws(() => checkResult({}), /0 credentials/);
  assert.throws(() => checkResult({ aws, token: { token: 'eyJ', expires_at: 'x' } }), /2 credentials/);
  assert.throws(() => checkResult({ aws: { ...aws, session_token: '' } }), /aws.session_token/);
  assert.throws(() => checkResult(null), /not a result/);
});
