/**
 * What an idle `mailward serve` asks of its store: statements per second and CPU per second of each process, with
 * nothing to do, one process or two sharing one PostgreSQL database (README, "Two PostgreSQL processes"). Trace
 * logging prints one `store query` line per statement (durations only: src/app/container.ts); this counts them.
 *
 *   MAILWARD_BENCH_DIALECTS=postgres,sqlite  MAILWARD_BENCH_PG_PROCESSES=1,2  MAILWARD_BENCH_SECONDS=20
 *   MAILWARD_BENCH_SERVE_ROOT=/path/to/other/checkout   (runs that checkout's sources: an old build to compare)
 *   MAILWARD_DELIVERY_POLL_MS=50                         (as bench/outbound.ts sets it)
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchStore, fmt, repoRoot, startProcess, table } from './support/bench-kit.js';

const root = process.env.MAILWARD_BENCH_SERVE_ROOT ?? repoRoot;
const windowSecs = Number(process.env.MAILWARD_BENCH_SECONDS ?? 20);
const settleSecs = Number(process.env.MAILWARD_BENCH_SETTLE_SECONDS ?? 8);

const cpuMs = (pid: number | undefined) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
};

type Serve = { child: ChildProcess; queries: () => number; stop: () => Promise<void> };

const serve = async (env: Record<string, string>): Promise<Serve> => {
  let queries = 0;
  let tail = '';
  const proc = await startProcess(['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'serve'], env, '/healthz', {
    cwd: root,
    onStdout: (d) => {
      const lines = (tail + d.toString()).split('\n');
      tail = lines.pop() ?? '';
      for (const l of lines) if (l.includes('"msg":"store query"')) queries++;
    },
  });
  return { child: proc.child, queries: () => queries, stop: proc.stop };
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dialects = (process.env.MAILWARD_BENCH_DIALECTS ?? 'postgres').split(',') as ('sqlite' | 'postgres')[];
const procModes = (process.env.MAILWARD_BENCH_PG_PROCESSES ?? '1,2').split(',').map(Number);
const rows: Record<string, string | number>[] = [];
for (const dialect of dialects)
  for (const procs of dialect === 'postgres' ? procModes : [1]) {
    const store = await benchStore(dialect);
    const env = {
      ...store.env,
      MAILWARD_MASTER_KEY: randomBytes(32).toString('base64'),
      MAILWARD_LOG_LEVEL: 'trace',
      MAILWARD_DOMAIN: 'bench.example',
    };
    const servers: Serve[] = [];
    try {
      servers.push(await serve(env));
      for (let i = 1; i < procs; i++)
        servers.push(await serve({ ...env, MAILWARD_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-idle-')) }));
      // Start-up passes (migrations, back-fill's first pass, the integrator's start pass) settle first.
      await sleep(settleSecs * 1000);
      const q0 = servers.map((s) => s.queries());
      const c0 = servers.map((s) => cpuMs(s.child.pid));
      await sleep(windowSecs * 1000);
      for (const [i, s] of servers.entries())
        rows.push({
          dialect,
          processes: procs,
          process: i + 1,
          'statements/s': fmt((s.queries() - q0[i]!) / windowSecs, 2),
          'CPU ms/s': fmt((cpuMs(s.child.pid) - c0[i]!) / windowSecs, 2),
          load: os.loadavg()[0]!.toFixed(1),
        });
    } finally {
      for (const s of servers) await s.stop();
      await store.drop();
    }
  }
table(`idle mailward serve (${root === repoRoot ? 'this checkout' : root}, ${windowSecs} s window)`, rows);
