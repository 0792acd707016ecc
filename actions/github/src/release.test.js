// Unit tests of release.js with a scripted HTTP client; the post step as a
// whole is tested end to end against a real broker by
// actions/github_release_test.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { releaseAll, releaseBody, releaseOne } from './release.js';

// scripted answers the client's posts in turn: {status, body, headers} or
// an Error to throw (a network failure).
function scripted(...answers) {
  const calls = [];
  return {
    calls,
    async post(url, body, headers) {
      calls.push({ url, body: JSON.parse(body), headers });
      const a = answers.shift();
      if (!a) throw new Error('unexpected call');
      if (a instanceof Error) throw a;
      return {
        message: { statusCode: a.status, headers: a.headers ?? {} },
        readBody: async () => (typeof a.body === 'string' ? a.body : JSON.stringify(a.body)),
      };
    },
  };
}

const released = (revoked = true) => ({ status: 200, body: { request_id: 'r1', released: true, revoked, detail: 'token r1 is revoked' } });
const refused = (status, code, desc) => ({ status, body: { error: code, error_description: desc, request_id: 'r1' } });
const netErr = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });

function credential(extra = {}) {
  return { policy: 'p', request_id: 'r1', type: 'token', expiration: '2026-11-23T10:15:00Z', destination: 'environment',
    release_token: 'RELEASE-TOKEN-SECRET', token: '', ...extra };
}

async function run(client, issued, opts = {}) {
  const info = [];
  const warn = [];
  const waits = [];
  const out = await releaseAll({
    client, baseURL: 'https://ferry.example.com/prefix/', issued, info: m => info.push(m), warn: m => warn.push(m),
    sleep: async ms => { waits.push(ms); }, ...opts,
  });
  return { out, info, warn, waits };
}

test('the body carries the credential only for kinds that must present it', () => {
  assert.deepEqual(JSON.parse(releaseBody({ request_id: 'r', release_token: 't', token: '' })), { request_id: 'r', release_token: 't' });
  assert.deepEqual(JSON.parse(releaseBody({ request_id: 'r', release_token: 't', token: 'ghs_x' })), { request_id: 'r', release_token: 't', token: 'ghs_x' });
});

test('a release posts to /v1/release under the broker\'s prefix and says what happened', async () => {
  const c = scripted(released(true));
  const r = await run(c, [credential({ type: 'github', token: 'ghs_secret' })]);
  assert.deepEqual(r.out, { released: 1, failed: 0 });
  assert.equal(c.calls[0].url, 'https://ferry.example.com/prefix/v1/release');
  assert.deepEqual(c.calls[0].body, { request_id: 'r1', release_token: 'RELEASE-TOKEN-SECRET', token: 'ghs_secret' });
  assert.match(r.info[0], /released the github credential of policy "p" \(request r1, environment\): it no longer works \(token r1 is revoked\)/);
  assert.equal(r.warn.length, 0);
});

test('an unrevoked release gives the broker\'s words, or says the credential expires by itself', async () => {
  let r = await run(scripted({ status: 200, body: { released: true, revoked: false, detail: 'recorded; it expires by itself at 10:15' } }), [credential()]);
  assert.match(r.info[0], /released the token credential of policy "p" \(request r1, environment\) \(recorded; it expires by itself at 10:15\)\.$/);
  r = await run(scripted({ status: 200, body: { released: true, revoked: false } }), [credential()]);
  assert.match(r.info[0], /\(request r1, environment\); it expires by itself at 2026-11-23T10:15:00Z\.$/);
});

test('429, 502, 503 and network errors are tried again, within max attempts; Retry-After is honoured', async () => {
  const table = [
    { answers: [refused(429, 'rate_limited', 'too many'), released()], attempts: 3, want: 1, waits: [3000], headers: { 'retry-after': '3' } },
    { answers: [refused(502, 'upstream_error', 'GitHub failed: 503'), refused(503, 'unavailable', 'store'), released()], attempts: 3, want: 1, waits: [1000, 2000] },
    { answers: [netErr(), released()], attempts: 3, want: 1, waits: [1000] },
    { answers: [netErr(), netErr(), netErr()], attempts: 3, want: 0, waits: [1000, 2000] },
    { answers: [netErr()], attempts: 1, want: 0, waits: [] },
  ];
  for (const [i, tt] of table.entries()) {
    if (tt.headers) tt.answers[0].headers = tt.headers;
    const c = scripted(...tt.answers);
    const r = await run(c, [credential()], { maxAttempts: tt.attempts });
    assert.equal(r.out.released, tt.want, `case ${i}`);
    assert.deepEqual(r.waits, tt.waits, `case ${i}`);
    if (!tt.want) assert.match(r.warn.at(-1), /could not release the token credential of policy "p" \(request r1, environment\): cannot reach the broker: connect ECONNREFUSED/);
  }
});

test('a refusal is final: one try, a warning with the broker\'s reason, never the secret', async () => {
  for (const [status, code] of [[403, 'access_denied'], [400, 'invalid_request'], [404, 'not_found']]) {
    const c = scripted(refused(status, code, 'the release token does not belong to that request'));
    const r = await run(c, [credential({ token: 'ghs_secret' })], { maxAttempts: 5 });
    assert.equal(c.calls.length, 1, `${status}`);
    assert.deepEqual(r.out, { released: 0, failed: 1 });
    assert.match(r.warn[0], new RegExp(`request r1.*${code}: the release token does not belong to that request \\(HTTP ${status}`));
    for (const m of [...r.warn, ...r.info]) {
      assert.ok(!m.includes('RELEASE-TOKEN-SECRET') && !m.includes('ghs_secret'), m);
    }
  }
});

test('a redirect is not followed and not retried', async () => {
  const c = scripted({ status: 307, body: '', headers: { location: 'https://elsewhere.example/v1/release' } });
  const r = await run(c, [credential()]);
  assert.equal(c.calls.length, 1);
  assert.match(r.warn[0], /HTTP 307 \(a redirect\); the release token is not sent on/);
});

test('a 200 that is not a release, a retry after longer than 30s, and a spent budget fail the release', async () => {
  let r = await run(scripted({ status: 200, body: '<html>' }), [credential()]);
  assert.match(r.warn[0], /200 with a body that is not a release/);
  r = await run(scripted({ status: 200, body: { released: false } }), [credential()]);
  assert.match(r.warn[0], /not a release/);
  r = await run(scripted({ ...refused(429, 'rate_limited', 'slow down'), headers: { 'retry-after': '120' } }), [credential()]);
  assert.match(r.warn[0], /retry after 120s, longer than this step waits/);
  assert.deepEqual(r.waits, []);
  // The budget is spent: the first credential's retry is cut short, the
  // second still gets its one try.
  let t = 0;
  const c = scripted(netErr(), released());
  r = await run(c, [credential(), credential({ request_id: 'r2' })], { budgetMs: 500, now: () => t });
  assert.deepEqual(r.out, { released: 1, failed: 1 });
  assert.match(r.warn[0], /no time left to try again/);
  assert.equal(c.calls[1].body.request_id, 'r2');
});

test('a URL that is not https is refused before anything is sent, and a credential without a release token is only named', async () => {
  const c = scripted();
  const r = await run(c, [credential(), credential({ request_id: 'r0', release_token: '' })], { baseURL: 'http://ferry.example.com' });
  assert.equal(c.calls.length, 0);
  assert.deepEqual(r.out, { released: 0, failed: 1 });
  assert.match(r.warn[0], /could not release .*request r1.*must use https/);
  assert.match(r.info[0], /request r0.* has no release token .* expires by itself/);
});

test('releaseOne returns the broker\'s answer', async () => {
  const res = await releaseOne({ client: scripted(released()), url: 'https://f.example/v1/release', release: credential(), maxAttempts: 1, log: () => {}, sleep: async () => {} });
  assert.equal(res.revoked, true);
});
