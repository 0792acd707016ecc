// The action: fetch the job's OIDC token, exchange it at Ferry, hand the
// credential to later steps — as environment variables, or as an AWS
// profile whose credential_process refreshes it — for one policy or a
// list. Every secret is masked before anything else touches it, a failure
// says what the broker said and never the token, and nothing is exported
// unless every exchange of the step succeeded. What release at the job's
// end needs (each credential's release token) goes into the step's state
// for the post step, never into an output or the environment.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as core from '@actions/core';
import { HttpClient } from '@actions/http-client';
import { checkBrokerURL, exchange, exchangeURL } from './broker.js';
import { plan } from './credentials.js';
import { entriesFromInputs, prefixed } from './targets.js';
import * as awsconfig from './awsconfig.js';
import * as cache from './cache.js';
import { CONFIG_VERSION } from './refresh.js';
import { STATE_KEY, STATE_VERSION, issuedCredentials } from './cleanup.js';
import { releaseAll } from './release.js';

const USER_AGENT = 'ferry-github-action/1';

// newClient is an HTTP client that honours the runner's proxy settings
// (https_proxy, no_proxy) and never follows a redirect: the body carries
// the job's token and must reach the broker it was meant for.
export function newClient() {
  return new HttpClient(USER_AGENT, [], { allowRedirects: false, allowRetries: false, socketTimeout: 30_000 });
}

function inputs() {
  const url = checkBrokerURL(core.getInput('url', { required: true }));
  const audience = core.getInput('audience') || 'ferry';
  const attemptsRaw = core.getInput('max-attempts') || '3';
  const maxAttempts = Number(attemptsRaw);
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 10) {
    throw new Error(`input max-attempts ${JSON.stringify(attemptsRaw)} must be a whole number from 1 to 10`);
  }
  const policies = core.getInput('policies');
  const entries = entriesFromInputs({
    policy: core.getInput('policy'),
    policies,
    awsProfile: core.getInput('aws-profile'),
    duration: core.getInput('duration'),
  });
  return {
    url,
    audience,
    maxAttempts,
    entries,
    single: !policies,
    region: core.getInput('aws-region'),
    exportEnv: boolInput('export-env', true),
    outputCredentials: boolInput('output-credentials', false),
    maskAccountID: boolInput('mask-aws-account-id', false),
    release: boolInput('release', true),
  };
}

// boolInput reads a boolean with a default, for runs where the runner did
// not fill the default in (a local run, a composite wrapper).
function boolInput(name, fallback) {
  return core.getInput(name) === '' ? fallback : core.getBooleanInput(name);
}

// runnerFiles refuses to run without the runner's file commands: without
// them @actions/core would fall back to stdout workflow commands, printing
// values into the log instead of handing them to the next step.
function runnerFiles() {
  const missing = ['GITHUB_OUTPUT', 'GITHUB_ENV', 'GITHUB_STATE'].filter(n => !process.env[n]);
  if (missing.length) {
    throw new Error(`${missing.join(', ')} not set: run this action in a GitHub Actions job on runner 2.297 or later`);
  }
}

async function idToken(audience) {
  if (!process.env.ACTIONS_ID_TOKEN_REQUEST_URL || !process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN) {
    throw new Error('no ID token: ACTIONS_ID_TOKEN_REQUEST_URL is unset; give the job `permissions: id-token: write`');
  }
  try {
    // getIDToken masks the token itself before returning it.
    return await core.getIDToken(audience);
  } catch (e) {
    throw new Error(`could not get the job's ID token for audience ${JSON.stringify(audience)}: ${e.message.replace(/\s+/g, ' ').trim()}`);
  }
}

// profileSetup checks, before any token is spent, everything an
// aws-profile needs: a job-private directory, a credential_process line
// that can be written, no profile of the same name elsewhere.
function profileSetup(entries) {
  const profiles = entries.filter(e => e.awsProfile);
  if (profiles.length === 0) return null;
  const temp = process.env.RUNNER_TEMP;
  if (!temp) throw new Error('RUNNER_TEMP is not set: aws-profile keeps its files there, out of the workspace');
  // The credential_process bundle sits beside this one in dist/.
  const script = path.join(path.dirname(path.resolve(process.argv[1])), 'credential-process', 'index.js');
  if (!fs.existsSync(script)) throw new Error(`${script} is missing: the action's dist/ is incomplete`);
  const dir = cache.privateDir(path.join(temp, 'ferry'));
  const configFile = path.join(dir, 'aws-config');
  const files = profiles.map(e => ({
    entry: e,
    config: path.join(dir, `${e.awsProfile}.json`),
    cache: path.join(dir, `${e.awsProfile}.cache.json`),
  }));
  for (const f of files) {
    f.command = awsconfig.commandLine([process.execPath, script, f.config]);
  }
  awsconfig.checkProfiles(configFile, profiles.map(e => ({ profile: e.awsProfile, policy: e.policy })));
  const shadow = awsconfig.shadowedProfiles(process.env, profiles.map(e => e.awsProfile));
  if (shadow.names.length) {
    throw new Error(`${shadow.file} defines profile ${shadow.names.join(', ')}, and the AWS SDKs read keys there before ` +
      'a credential_process: pick another aws-profile name');
  }
  return { dir, configFile, files };
}

// Where a credential went, for the summary line and the post step.
function destination(e, single) {
  if (e.awsProfile) return `profile ${e.awsProfile}`;
  if (e.envPrefix) return `${e.envPrefix}* variables`;
  return single ? '' : 'the default variables';
}

// releaseRecord is what the post step needs to release one credential:
// its request id, its release token and, for kinds whose provider ends a
// credential only when shown it (github), the credential.
function releaseRecord(res) {
  const r = { request_id: res.request_id ?? '', release_token: res.release_token ?? '' };
  if (res.github) r.token = res.github.token;
  return r;
}

export async function run() {
  const tokens = [];
  let inp = null;
  let client = null;
  const granted = [];
  let saved = false;
  try {
    inp = inputs();
    runnerFiles();
    const setup = profileSetup(inp.entries);

    // Every exchange first: a refusal of the second policy must not leave
    // the first one's credential half handed out.
    client = newClient();
    for (const e of inp.entries) {
      const res = await exchange({
        client,
        url: exchangeURL(inp.url),
        policy: e.policy,
        duration: e.duration,
        maxAttempts: inp.maxAttempts,
        getToken: async () => {
          const t = await idToken(inp.audience);
          tokens.push(t);
          return t;
        },
        log: msg => core.warning(msg),
        sleep: ms => new Promise(resolve => setTimeout(resolve, ms)),
      });
      const p = plan(res, { region: inp.region, outputCredentials: inp.outputCredentials, maskAccountID: inp.maskAccountID });
      // Mask first: from here on any of these values in the log is ***.
      for (const s of p.secrets) core.setSecret(s);
      granted.push({ entry: e, res, plan: p });
    }
    for (const g of granted) {
      if (g.entry.awsProfile && g.plan.kind !== 'aws') {
        throw new Error(`policy ${JSON.stringify(g.entry.policy)} granted a ${g.plan.kind} credential; aws-profile is for aws grants only (use env-prefix)`);
      }
    }

    const exported = [];
    const exportVar = (name, value) => {
      core.exportVariable(name, value);
      exported.push(name);
    };
    const state = {
      version: STATE_VERSION, env: exported, credentials: [], dir: '', config_file: '', profiles: [], files: [],
      url: inp.url.href, release: inp.release, max_attempts: inp.maxAttempts, releases: [],
    };

    if (setup) {
      const now = Date.now();
      for (const f of setup.files) {
        const g = granted.find(x => x.entry === f.entry);
        const cfg = {
          version: CONFIG_VERSION,
          url: inp.url.href,
          policy: f.entry.policy,
          audience: inp.audience,
          duration: f.entry.duration,
          max_attempts: inp.maxAttempts,
          cache: f.cache,
          release: inp.release,
        };
        fs.writeFileSync(f.config, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
        cache.writeCache(f.cache, cache.newEntry(inp.release ? g.res : { ...g.res, release_token: undefined }, now, null));
        state.files.push(f.config, f.cache);
      }
      awsconfig.upsertProfiles(setup.configFile, setup.files.map(f => ({
        profile: f.entry.awsProfile, policy: f.entry.policy, command: f.command, region: inp.region,
      })));
      Object.assign(state, { dir: setup.dir, config_file: setup.configFile, profiles: setup.files.map(f => f.entry.awsProfile) });
      // A file path, not a credential: exported even with export-env false,
      // or no SDK would find the profile.
      exportVar('AWS_CONFIG_FILE', setup.configFile);
      if (inp.single) exportVar('AWS_PROFILE', inp.entries[0].awsProfile);
      if (process.env.AWS_ACCESS_KEY_ID && !granted.some(g => !g.entry.awsProfile && g.plan.kind === 'aws' && inp.exportEnv)) {
        core.warning('Ferry: AWS_ACCESS_KEY_ID is set by an earlier step, and the AWS SDKs use it before any profile: ' +
          'unset it, or pass --profile / AWS_PROFILE to the commands that should use Ferry\'s');
      }
    }

    for (const g of granted) {
      if (!g.entry.awsProfile && inp.exportEnv) {
        for (const [name, value] of prefixed(g.plan.env, g.entry.envPrefix)) exportVar(name, value);
      } else if (g.entry.awsProfile && inp.region) {
        exportVar('AWS_REGION', inp.region);
        exportVar('AWS_DEFAULT_REGION', inp.region);
      }
      state.credentials.push({
        policy: g.res.policy ?? g.entry.policy,
        request_id: g.res.request_id ?? '',
        type: g.plan.kind,
        expiration: g.plan.outputs.find(([n]) => n === 'expiration')?.[1] ?? '',
        destination: destination(g.entry, inp.single) || 'environment',
      });
      if (inp.release) state.releases.push(releaseRecord(g.res));
    }
    state.env = [...new Set(exported)];

    if (inp.single) {
      for (const [name, value] of granted[0].plan.outputs) core.setOutput(name, value);
      if (setup) {
        core.setOutput('aws-profile', inp.entries[0].awsProfile);
        core.setOutput('aws-config-file', setup.configFile);
      }
    } else if (setup) {
      core.setOutput('aws-config-file', setup.configFile);
    }
    core.setOutput('credentials', JSON.stringify(state.credentials));
    core.saveState(STATE_KEY, JSON.stringify(state));
    saved = true;

    for (const [i, g] of granted.entries()) {
      const c = state.credentials[i];
      const where = destination(g.entry, inp.single);
      let how;
      if (g.entry.awsProfile) {
        how = ` into ${where} (AWS_CONFIG_FILE), refreshed by its credential_process when the SDK asks`;
      } else if (inp.exportEnv) {
        how = ` and exported ${prefixed(g.plan.env, g.entry.envPrefix).map(([n]) => n).join(', ')}`;
      } else {
        how = '';
      }
      core.info(`Ferry: policy ${JSON.stringify(c.policy)} granted ${g.plan.summary}, valid until ${c.expiration} (request ${c.request_id})${how}.`);
    }
  } catch (e) {
    let msg = e instanceof Error ? e.message : String(e);
    // Belt and braces: the token is masked, but a message must not carry it
    // even where masking is off (a local run, a log shipped elsewhere).
    for (const t of tokens) if (t) msg = msg.split(t).join('***');
    core.setFailed(`Ferry: ${msg}`);
    // Credentials obtained for a step that then failed were handed to no
    // one, and no post step will know of them: end them now.
    if (!saved && granted.length && inp?.release) await releaseUnused(inp, client, granted);
  }
}

async function releaseUnused(inp, client, granted) {
  const st = {
    credentials: granted.map(g => ({ policy: g.res.policy ?? g.entry.policy, request_id: g.res.request_id ?? '', type: g.plan.kind,
      expiration: g.plan.outputs.find(([n]) => n === 'expiration')?.[1] ?? '', destination: 'not handed out' })),
    releases: granted.map(g => releaseRecord(g.res)),
    files: [],
  };
  await releaseAll({
    client, baseURL: inp.url.href, issued: issuedCredentials(st), maxAttempts: inp.maxAttempts,
    info: msg => core.info(msg), warn: msg => core.warning(msg), sleep: ms => new Promise(resolve => setTimeout(resolve, ms)),
  });
}
