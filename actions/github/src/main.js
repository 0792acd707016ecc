// The action: fetch the job's OIDC token, exchange it at Ferry, hand the
// credential to later steps. Every secret is masked before anything else
// touches it, and a failure says what the broker said, never the token.

import * as core from '@actions/core';
import { HttpClient } from '@actions/http-client';
import { checkBrokerURL, exchange, exchangeURL } from './broker.js';
import { plan } from './credentials.js';

const USER_AGENT = 'ferry-github-action/1';

// newClient is an HTTP client that honours the runner's proxy settings
// (https_proxy, no_proxy) and never follows a redirect: the body carries
// the job's token and must reach the broker it was meant for.
function newClient() {
  return new HttpClient(USER_AGENT, [], { allowRedirects: false, allowRetries: false, socketTimeout: 30_000 });
}

function inputs() {
  const url = checkBrokerURL(core.getInput('url', { required: true }));
  const policy = core.getInput('policy', { required: true });
  const audience = core.getInput('audience') || 'ferry';
  const duration = core.getInput('duration');
  if (duration && !/^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/.test(duration)) {
    throw new Error(`input duration ${JSON.stringify(duration)} is not a duration such as 15m or 1h30m`);
  }
  const attemptsRaw = core.getInput('max-attempts') || '3';
  const maxAttempts = Number(attemptsRaw);
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 10) {
    throw new Error(`input max-attempts ${JSON.stringify(attemptsRaw)} must be a whole number from 1 to 10`);
  }
  return {
    url,
    policy,
    audience,
    duration,
    maxAttempts,
    region: core.getInput('aws-region'),
    exportEnv: boolInput('export-env', true),
    outputCredentials: boolInput('output-credentials', false),
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
function runnerFiles(exportEnv) {
  const missing = [];
  if (!process.env.GITHUB_OUTPUT) missing.push('GITHUB_OUTPUT');
  if (exportEnv && !process.env.GITHUB_ENV) missing.push('GITHUB_ENV');
  if (missing.length) {
    throw new Error(`${missing.join(' and ')} not set: run this action in a GitHub Actions job on runner 2.297 or later`);
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

export async function run() {
  let token = '';
  try {
    const inp = inputs();
    runnerFiles(inp.exportEnv);
    const res = await exchange({
      client: newClient(),
      url: exchangeURL(inp.url),
      policy: inp.policy,
      duration: inp.duration,
      maxAttempts: inp.maxAttempts,
      getToken: async () => (token = await idToken(inp.audience)),
      log: msg => core.warning(msg),
      sleep: ms => new Promise(resolve => setTimeout(resolve, ms)),
    });
    const p = plan(res, { region: inp.region, outputCredentials: inp.outputCredentials });

    // Mask first: from here on any of these values in the log is ***.
    for (const s of p.secrets) core.setSecret(s);

    if (inp.exportEnv) {
      for (const [name, value] of p.env) core.exportVariable(name, value);
    }
    for (const [name, value] of p.outputs) core.setOutput(name, value);

    const exported = inp.exportEnv ? ` and exported ${p.env.map(([n]) => n).join(', ')}` : '';
    const expires = p.outputs.find(([n]) => n === 'expiration')?.[1] ?? '';
    core.info(`Ferry: policy ${JSON.stringify(res.policy)} granted ${p.summary}, valid until ${expires} (request ${res.request_id})${exported}.`);
  } catch (e) {
    let msg = e instanceof Error ? e.message : String(e);
    // Belt and braces: the token is masked, but a message must not carry it
    // even where masking is off (a local run, a log shipped elsewhere).
    if (token) msg = msg.split(token).join('***');
    core.setFailed(`Ferry: ${msg}`);
  }
}
