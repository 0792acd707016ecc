// Entry point bundled into dist/credential-process/index.js: the command an
// aws-profile's credential_process line runs. stdout carries the
// credential JSON and nothing else.
import { HttpClient } from '@actions/http-client';
import { credentialProcess, readConfig } from './refresh.js';

const log = msg => process.stderr.write(msg.replace(/\s+$/, '') + '\n');

try {
  const cfg = readConfig(process.argv[2]);
  const client = new HttpClient('ferry-github-action/1 credential-process', [], {
    allowRedirects: false, allowRetries: false, socketTimeout: 30_000,
  });
  const cred = await credentialProcess({
    cfg, env: process.env, client, log, sleep: ms => new Promise(resolve => setTimeout(resolve, ms)),
  });
  process.stdout.write(JSON.stringify(cred) + '\n');
} catch (e) {
  log(`Ferry credential_process: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
}
