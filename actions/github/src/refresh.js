// What an aws-profile's credential_process does each time an AWS SDK asks:
// hand back the cached credential while it is fresh, else exchange a fresh
// OIDC token from the runner at the broker and cache the answer. Its only
// output is the credential_process JSON; every message goes to stderr.

import * as fs from 'node:fs';
import { checkBrokerURL, exchange, exchangeURL } from './broker.js';
import * as cache from './cache.js';
import { requestIDToken } from './idtoken.js';

export const CONFIG_VERSION = 1;

// readConfig reads the per-profile settings the main step wrote.
export function readConfig(file) {
  if (!file) throw new Error('usage: credential-process CONFIG.json (the aws-profile step writes this line itself)');
  let cfg;
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`read ${file}: ${e.code === 'ENOENT' ? 'no such file (the job that wrote this profile has ended?)' : e.message}`);
  }
  if (cfg?.version !== CONFIG_VERSION) throw new Error(`${file} is not a version ${CONFIG_VERSION} Ferry profile config`);
  for (const k of ['url', 'policy', 'cache']) {
    if (typeof cfg[k] !== 'string' || cfg[k] === '') throw new Error(`${file} lacks ${k}`);
  }
  checkBrokerURL(cfg.url);
  return cfg;
}

// credentialProcess returns the credential to print.
export async function credentialProcess({ cfg, env, client, log, now = Date.now, sleep }) {
  return cache.withLock(cfg.cache, async () => {
    const held = cache.readCache(cfg.cache);
    if (cache.fresh(held, cfg.policy, now())) return held.credential;
    let res;
    try {
      res = await exchange({
        client,
        url: exchangeURL(checkBrokerURL(cfg.url)),
        policy: cfg.policy,
        duration: cfg.duration || '',
        maxAttempts: cfg.max_attempts || 3,
        getToken: () => requestIDToken(client, env, cfg.audience || 'ferry'),
        log,
        sleep,
      });
      if (!res.aws) throw new Error(`policy ${JSON.stringify(cfg.policy)} granted no aws credential`);
    } catch (e) {
      // A refresh that fails while the held credential still works is not
      // worth failing the SDK call over: hand it back, say why on stderr.
      if (held && held.policy === cfg.policy && cache.unexpired(held, now())) {
        log(`Ferry: refreshing policy ${JSON.stringify(cfg.policy)} failed (${e.message}); using the cached credential until ${held.credential.Expiration}`);
        return held.credential;
      }
      throw e;
    }
    // The cache keeps the refresh's release token for the post step, unless
    // the step was told not to release.
    const next = cache.newEntry(cfg.release === false ? { ...res, release_token: undefined } : res, now(), held);
    cache.writeCache(cfg.cache, next);
    return next.credential;
  }, { now, sleep });
}
