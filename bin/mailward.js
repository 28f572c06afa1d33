#!/usr/bin/env node
// Runs the compiled CLI. `npm install` builds it (the `prepare` script); when a
// source file is newer than the build (a `git pull` without `npm install`, an
// edit), it is rebuilt once here, so `npm start` never runs stale code and
// never compiles when nothing changed.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// package.json engines: >=22.12. Older Node.js is out of support, and better-sqlite3 13 crashes on 20.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  process.stderr.write(
    `mailward: Node.js ${process.version} is not supported; install Node.js 24 LTS (22.12 or later); see README "Quick start"\n`,
  );
  process.exit(2);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'dist', 'src', 'cli', 'main.js');

const mtime = (p) => {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return -1;
  }
};
const newestSource = (dir) => {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) newest = Math.max(newest, mtime(p));
  }
  return newest;
};

const built = mtime(main);
// sdk/src is compiled in too: the provisioning commands call running servers through the SDK.
if (
  built < 0 ||
  Math.max(newestSource(join(root, 'src')), newestSource(join(root, 'verifier', 'src')), newestSource(join(root, 'sdk', 'src'))) > built
) {
  process.stderr.write(
    built < 0
      ? 'mailward: not built yet; compiling (npm run build)\n'
      : 'mailward: sources changed since the last build; compiling (npm run build)\n',
  );
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    process.stderr.write('mailward: the build failed; fix the errors above or run `npm install`\n');
    process.exit(2);
  }
}
await import(main);
