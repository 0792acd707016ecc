// Which credentials one step asks for, and where each one goes. Checked in
// full before any token is requested, so a list that would export two
// credentials into the same variables fails without spending anything.
// No imports: `node --test` runs its tests without node_modules.

const POLICY = /^[A-Za-z0-9._-]{1,128}$/;
const PROFILE = /^[A-Za-z0-9._-]{1,64}$/;
const PREFIX = /^[A-Za-z_][A-Za-z0-9_]{0,62}_$/;
export const DURATION = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;

const OPTIONS = new Set(['aws-profile', 'env-prefix', 'duration']);

// parseList reads the `policies` input: one credential a line,
//   POLICY [aws-profile=NAME] [env-prefix=PREFIX_] [duration=D]
// with blank lines and # comments ignored.
export function parseList(text) {
  const entries = [];
  const lines = String(text).split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line) return;
    const where = `policies line ${i + 1}`;
    const [policy, ...opts] = line.split(/\s+/);
    if (!POLICY.test(policy)) {
      throw new Error(`${where}: ${JSON.stringify(policy)} is not a policy name (letters, digits, . _ -)`);
    }
    const entry = { policy, awsProfile: '', envPrefix: '', duration: '', line: i + 1 };
    for (const opt of opts) {
      const eq = opt.indexOf('=');
      const key = eq < 0 ? opt : opt.slice(0, eq);
      const value = eq < 0 ? '' : opt.slice(eq + 1);
      if (!OPTIONS.has(key)) {
        throw new Error(`${where}: unknown option ${JSON.stringify(key)} (want aws-profile=, env-prefix= or duration=)`);
      }
      if (value === '') throw new Error(`${where}: ${key} needs a value, e.g. ${key}=${example(key)}`);
      const field = { 'aws-profile': 'awsProfile', 'env-prefix': 'envPrefix', duration: 'duration' }[key];
      if (entry[field]) throw new Error(`${where}: ${key} is given twice`);
      entry[field] = value;
    }
    entries.push(entry);
  });
  if (entries.length === 0) throw new Error('input policies names no policy');
  return entries;
}

function example(key) {
  return { 'aws-profile': 'prod', 'env-prefix': 'ARTIFACTS_', duration: '30m' }[key];
}

// checkEntries validates each entry and the set together. The broker tells
// the grant kind only in its answer, so where a credential goes must be
// decided by the entries alone: at most one may use the default variables
// (AWS_*, CLOUDSDK_AUTH_ACCESS_TOKEN, FERRY_TOKEN); every other one names
// an aws-profile or an env-prefix of its own.
export function checkEntries(entries) {
  const seen = { policy: new Map(), awsProfile: new Map(), envPrefix: new Map() };
  const defaults = [];
  for (const e of entries) {
    const where = e.line ? `policies line ${e.line}` : 'input';
    if (e.awsProfile && !PROFILE.test(e.awsProfile)) {
      throw new Error(`${where}: aws-profile ${JSON.stringify(e.awsProfile)} must be letters, digits, . _ - (at most 64)`);
    }
    if (e.envPrefix && !PREFIX.test(e.envPrefix)) {
      throw new Error(`${where}: env-prefix ${JSON.stringify(e.envPrefix)} must be a variable name ending in _, e.g. ARTIFACTS_`);
    }
    if (e.awsProfile && e.envPrefix) {
      throw new Error(`${where}: give aws-profile or env-prefix, not both`);
    }
    if (e.duration && !DURATION.test(e.duration)) {
      throw new Error(`${where}: duration ${JSON.stringify(e.duration)} is not a duration such as 15m or 1h30m`);
    }
    for (const field of ['policy', 'awsProfile', 'envPrefix']) {
      const v = e[field];
      if (!v) continue;
      if (seen[field].has(v)) {
        const name = { policy: 'policy', awsProfile: 'aws-profile', envPrefix: 'env-prefix' }[field];
        throw new Error(`${name} ${JSON.stringify(v)} appears twice (${seen[field].get(v)} and ${where}): each credential needs its own`);
      }
      seen[field].set(v, where);
    }
    if (!e.awsProfile && !e.envPrefix) defaults.push(e.policy);
  }
  if (defaults.length > 1) {
    throw new Error(`policies ${defaults.map(p => JSON.stringify(p)).join(' and ')} would all export into the same variables ` +
      '(AWS_ACCESS_KEY_ID…, CLOUDSDK_AUTH_ACCESS_TOKEN, FERRY_TOKEN), and the later would overwrite the earlier: ' +
      'give every one but one an aws-profile=NAME (aws grants) or an env-prefix=PREFIX_ (any grant)');
  }
  return entries;
}

// entriesFromInputs is the list a step asks for: `policies`, or the single
// `policy` with `aws-profile`.
export function entriesFromInputs({ policy, policies, awsProfile, duration }) {
  if (policy && policies) throw new Error('give input policy or input policies, not both');
  if (!policy && !policies) throw new Error('Input required and not supplied: policy (or policies)');
  if (policies) {
    if (awsProfile) throw new Error('input aws-profile is for a single policy; in policies, give each line its own aws-profile=NAME');
    return checkEntries(parseList(policies).map(e => ({ ...e, duration: e.duration || duration })));
  }
  return checkEntries([{ policy, awsProfile: awsProfile || '', envPrefix: '', duration: duration || '', line: 0 }]);
}

// prefixed renames a plan's variables for an env-prefix entry.
export function prefixed(env, prefix) {
  return prefix ? env.map(([n, v]) => [prefix + n, v]) : env;
}
