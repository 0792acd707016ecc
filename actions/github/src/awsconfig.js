// The job-private AWS config file that aws-profile writes: one
// `credential_process` profile per credential, read by the aws CLI and
// every AWS SDK through AWS_CONFIG_FILE.
// Node builtins only: `node --test` runs the tests without node_modules.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

const HEADER = /^\s*\[\s*(?:profile\s+)?([^\]]+?)\s*\]\s*$/;
const OWNER = /^# ferry: policy (\S+)$/;

// sectionName is the config file's header for a profile: the default
// profile is [default], every other one [profile NAME].
export function sectionName(profile) {
  return profile === 'default' ? '[default]' : `[profile ${profile}]`;
}

// commandLine joins argv into a credential_process value that every
// reader of the config file splits back into the same argv. botocore
// splits it like a POSIX shell (shlex) and aws-sdk-go-v2 hands it to
// `sh -c`, so on POSIX each unsafe character gets a backslash: double
// quotes would not do, since aws-sdk-go-v2's ini reader strips a pair
// that wraps the whole value, and it cuts a value at " #" or " ;". On
// Windows (cmd.exe's rules, untested) an argument with a space is
// double-quoted.
export function commandLine(argv, platform = process.platform) {
  return argv.map((a, i) => {
    // Control characters have no business in these paths, and the ini
    // readers trim the value: a final blank would be lost.
    // eslint-disable-next-line no-control-regex
    if (a === '' || /[\x00-\x1f\x7f]/.test(a) || (i === argv.length - 1 && /\s$/u.test(a))) {
      throw new Error(`cannot write ${JSON.stringify(a)} into a credential_process line`);
    }
    if (platform === 'win32') {
      if (/["%]/.test(a)) throw new Error(`cannot write ${JSON.stringify(a)} into a credential_process line: it holds " or %`);
      return /\s/.test(a) ? `"${a}"` : a;
    }
    return a.replace(/[^A-Za-z0-9_.\/:@%+=,-]/g, c => `\\${c}`);
  }).join(' ');
}

// renderProfile is one profile section.
export function renderProfile({ profile, policy, command, region }) {
  const lines = [sectionName(profile), `# ferry: policy ${policy}`, `credential_process = ${command}`];
  if (region) lines.push(`region = ${region}`);
  return lines.join('\n') + '\n';
}

// parseSections splits a config file into [{name, policy, text}], keeping
// anything before the first header as a preamble.
export function parseSections(text) {
  const sections = [];
  let preamble = '';
  let cur = null;
  for (const line of text.split(/(?<=\n)/)) {
    const m = HEADER.exec(line.replace(/\r?\n$/, ''));
    if (m) {
      cur = { name: m[1], policy: '', text: line };
      sections.push(cur);
      continue;
    }
    if (!cur) {
      preamble += line;
      continue;
    }
    const owner = OWNER.exec(line.trim());
    if (owner) cur.policy = owner[1];
    cur.text += line;
  }
  return { preamble, sections };
}

function readText(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return '';
    throw new Error(`read AWS config ${file}: ${e.message}`);
  }
}

function writeAtomic(file, text) {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.unlinkSync(tmp); } catch { /* gone */ }
    throw new Error(`write AWS config ${file}: ${e.message}`);
  }
}

// checkProfiles refuses, before any exchange, a profile that an earlier
// step of this job wrote for another policy.
export function checkProfiles(file, profiles) {
  const { sections } = parseSections(readText(file));
  for (const p of profiles) {
    const s = sections.find(x => x.name === p.profile);
    if (s && s.policy !== p.policy) {
      throw new Error(`aws-profile ${JSON.stringify(p.profile)} is already in ${file} for ` +
        `${s.policy ? `policy ${JSON.stringify(s.policy)}` : 'something else'}: pick another profile name`);
    }
  }
}

// upsertProfiles writes each profile into file, replacing a section of the
// same name and keeping every other one.
export function upsertProfiles(file, profiles) {
  checkProfiles(file, profiles);
  const { preamble, sections } = parseSections(readText(file));
  const names = new Set(profiles.map(p => p.profile));
  const kept = sections.filter(s => !names.has(s.name)).map(s => s.text.replace(/\n*$/, '\n'));
  const head = preamble || '# Written by the Ferry action for this job only; its post step removes it.\n';
  writeAtomic(file, [head, ...kept, ...profiles.map(renderProfile)].join('\n'));
}

// removeProfiles drops the named sections and deletes the file once no
// section is left. It returns how many remain.
export function removeProfiles(file, names) {
  const text = readText(file);
  if (!text) return 0;
  const { preamble, sections } = parseSections(text);
  const kept = sections.filter(s => !names.includes(s.name));
  if (kept.length === 0) {
    fs.rmSync(file, { force: true });
    return 0;
  }
  writeAtomic(file, [preamble, ...kept.map(s => s.text.replace(/\n*$/, '\n'))].join('\n'));
  return kept.length;
}

// shadowedProfiles lists the profiles that the shared credentials file
// also defines: the SDKs read keys there before a credential_process, so
// such a profile would not get Ferry's credential at all.
export function shadowedProfiles(env, profiles) {
  const file = env.AWS_SHARED_CREDENTIALS_FILE || path.join(os.homedir(), '.aws', 'credentials');
  const { sections } = parseSections(readText(file));
  return { file, names: profiles.filter(p => sections.some(s => s.name === p)) };
}
