// Builds the three bundles the runner runs into dist/ (or the directory
// given as the first argument, which the freshness test uses):
//   index.js                     the main step
//   post/index.js                the post step
//   credential-process/index.js  what an aws-profile's credential_process runs
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] || path.join(here, 'dist'));
const ncc = path.join(here, 'node_modules', '@vercel', 'ncc', 'dist', 'ncc', 'cli.js');
const bundles = [
  ['src/index.js', ''],
  ['src/post.js', 'post'],
  ['src/credential-process.js', 'credential-process'],
];
// ncc empties its output directory first, so the bundle that owns the top
// of it goes first.
for (const [entry, sub] of bundles) {
  execFileSync(process.execPath, [ncc, 'build', entry, '--out', path.join(out, sub), '--license', 'licenses.txt',
    '--no-source-map-register', '--quiet'], { cwd: here, stdio: 'inherit' });
}
