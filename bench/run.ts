/**
 * `npm run bench`: runs every benchmark script in bench/ one after another in
 * its own process (so one cannot warm or starve another) and prints their tables.
 * MAILWARD_BENCH_ONLY=name[,name] picks some; MAILWARD_BENCH_SECONDS sets load duration.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const dir = import.meta.dirname;
const only = process.env.MAILWARD_BENCH_ONLY?.split(',').map((s) => s.trim());
const scripts = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .filter((f) => !only || only.includes(f.replace(/\.ts$/, '')))
  .sort();
let failed = 0;
for (const s of scripts) {
  process.stdout.write(`\n=== bench/${s} ===\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(dir, s)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
