// Entry point bundled into dist/post/index.js: the action's post step. It
// releases every credential the step handed out (unless the release input
// was false), then clears what the main step exported. Nothing here fails
// the job: its result is already decided, and a credential that could not
// be released still expires by itself.
import * as core from '@actions/core';
import { HttpClient } from '@actions/http-client';
import { STATE_KEY, cleanup, issuedCredentials, leftToExpire, parseState } from './cleanup.js';
import { releaseAll } from './release.js';

async function post() {
  const st = parseState(core.getState(STATE_KEY));
  if (!st) {
    core.info('Ferry: the main step handed nothing out; nothing to release or clean up.');
    return;
  }
  const issued = issuedCredentials(st);
  // The main step masked its own; a refresh's credential_process could
  // not (its stdout is the SDK's), so mask them all before any release.
  for (const c of issued) {
    if (c.release_token) core.setSecret(c.release_token);
    if (c.token) core.setSecret(c.token);
  }
  if (st.release === false) {
    core.info('Ferry: input release is false: the credentials are not released at the job\'s end.');
    leftToExpire(issued, msg => core.info(msg));
  } else if (issued.length) {
    const client = new HttpClient('ferry-github-action/1 post', [], { allowRedirects: false, allowRetries: false, socketTimeout: 30_000 });
    await releaseAll({
      client,
      baseURL: st.url,
      issued,
      maxAttempts: Number.isInteger(st.max_attempts) && st.max_attempts >= 1 && st.max_attempts <= 10 ? st.max_attempts : 3,
      info: msg => core.info(msg),
      warn: msg => core.warning(msg),
      sleep: ms => new Promise(resolve => setTimeout(resolve, ms)),
    });
  }
  cleanup(st, { exportVariable: (n, v) => core.exportVariable(n, v), log: msg => core.info(msg) });
}

try {
  await post();
} catch (e) {
  // A failed post step must be seen, but the job's result is already decided.
  core.warning(`Ferry post step: ${e instanceof Error ? e.message : String(e)}`);
}
