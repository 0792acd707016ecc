// Entry point bundled into dist/post/index.js: the action's post step.
import * as core from '@actions/core';
import { STATE_KEY, cleanup, parseState } from './cleanup.js';

try {
  const st = parseState(core.getState(STATE_KEY));
  if (st) {
    cleanup(st, { exportVariable: (n, v) => core.exportVariable(n, v), log: msg => core.info(msg) });
  } else {
    core.info('Ferry: the main step handed nothing out; nothing to clean up.');
  }
} catch (e) {
  // A failed cleanup must be seen, but the job's result is already decided.
  core.warning(`Ferry post step: ${e instanceof Error ? e.message : String(e)}`);
}
