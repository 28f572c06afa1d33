/**
 * Start-up: from `npm start` (and from `node bin/mailward.js serve`) to the
 * first 200 from /healthz, on a data dir a first start already initialised,
 * against a bare Node.js HTTP server started the same way in the same run.
 * Target: under 3 s (a supervisor restart must not wait for a build).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { benchStore, fmt, freePort, repoRoot, table } from './support/bench-kit.js';
import { stopChild } from '../test/support/processes.js';

const runs = Number(process.env.MAILWARD_BENCH_RUNS ?? 5);

/** Milliseconds from spawn to the first 2xx of `path`, polling every 10 ms. */
const timeToReady = async (
  cmd: string,
  args: string[],
  env: Record<string, string>,
  path: string,
): Promise<{ ms: number; child: ChildProcess }> => {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(cmd, args, {
    cwd: repoRoot,
    env: { ...process.env, ...env, PORT: String(port), MAILWARD_HTTP_PORT: String(port), MAILWARD_SMTP_PORT: String(await freePort()) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (d) => {
    err += d;
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`exited before it was ready: ${err}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}${path}`)).ok) return { ms: performance.now() - started, child };
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`not ready within 60 s: ${err}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

const measure = async (label: string, cmd: string, args: string[], env: Record<string, string>, path: string) => {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const { ms, child } = await timeToReady(cmd, args, env, path);
    times.push(ms);
    await stopChild(child);
  }
  return { label, median: median(times), max: Math.max(...times) };
};

const bareServer = "require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT), '127.0.0.1')";
const bare = await measure('bare node:http server (node -e)', process.execPath, ['-e', bareServer], {}, '/');

const rows: Record<string, string | number>[] = [
  { start: bare.label, 'median ms': fmt(bare.median), 'max ms': fmt(bare.max), 'over bare ms': 0 },
];
for (const dialect of (process.env.MAILWARD_BENCH_DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[]) {
  const store = await benchStore(dialect);
  const env = { ...store.env, MAILWARD_LOG_LEVEL: 'warn' };
  // The first start initialises the store (organisation, keys, first checkpoint); the rows measure restarts.
  const first = await timeToReady('npm', ['start', '--silent'], env, '/healthz');
  await stopChild(first.child);
  rows.push({
    start: `first npm start, empty store (${dialect})`,
    'median ms': fmt(first.ms),
    'max ms': fmt(first.ms),
    'over bare ms': fmt(first.ms - bare.median),
  });
  for (const [label, cmd, args] of [
    [`npm start (${dialect})`, 'npm', ['start', '--silent']],
    [`node bin/mailward.js serve (${dialect})`, process.execPath, ['bin/mailward.js', 'serve']],
  ] as const) {
    const r = await measure(label, cmd, [...args], env, '/healthz');
    rows.push({ start: r.label, 'median ms': fmt(r.median), 'max ms': fmt(r.max), 'over bare ms': fmt(r.median - bare.median) });
  }
  await store.drop();
}
table(`Start to the first 200 from /healthz, ${runs} restarts each (target < 3,000 ms)`, rows);
