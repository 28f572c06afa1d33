/**
 * SQLite under many concurrent writers: 200 connections POST /v1/departments (a transaction with its audit
 * event each) against a real `mailward serve` for several runs. Prints latency (p50, p99, max), how many
 * requests waited over 10 s, 503 store_busy answers, and the server's resident and heap memory after each run:
 * waiting must be fair and bounded, and memory must come back between runs.
 * MAILWARD_BENCH_SECONDS sets each run's length; MAILWARD_BENCH_RUNS the number of runs (3).
 */
import fs from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';
import { benchStore, fmt, repoRoot, seconds, startProcess, table } from './support/bench-kit.js';

const runs = Number(process.env.MAILWARD_BENCH_RUNS ?? 3);
const connections = Number(process.env.MAILWARD_BENCH_CONNECTIONS ?? 200);

const memory = async (port: number) => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const metric = (name: string) => Number(text.match(new RegExp(`^${name} (\\S+)`, 'm'))?.[1] ?? Number.NaN) / 2 ** 20;
  // Server-side durations of the route (from the first byte fastify sees to the reply): the tail the store adds,
  // apart from what the load generator and the network add.
  const bucket = (le: string) =>
    Number(
      text.match(
        new RegExp(`^mailward_http_request_duration_seconds_bucket\\{le="${le}",method="POST",route="/v1/departments"\\} (\\S+)`, 'm'),
      )?.[1] ?? 0,
    );
  return {
    rss: metric('mailward_process_resident_memory_bytes'),
    heap: metric('mailward_nodejs_heap_size_used_bytes'),
    total: bucket('\\+Inf'),
    within1s: bucket('1'),
  };
};

const store = await benchStore('sqlite');
const server = await startProcess(['--expose-gc', '--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'serve'], {
  ...store.env,
  MAILWARD_LOG_LEVEL: 'error',
  MAILWARD_RATE_LIMIT_PER_MINUTE: '100000000',
});
const key = fs.readFileSync(path.join(store.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
const before = await memory(server.port);
let counted = { total: before.total, within1s: before.within1s };
const rows: Record<string, string | number>[] = [
  {
    run: 'start',
    'req/s': '-',
    'p50 ms': '-',
    'p99 ms': '-',
    'max ms': '-',
    '>10 s': '-',
    '503 busy': '-',
    errors: '-',
    'server >1 s': '-',
    'rss MB': fmt(before.rss),
    'heap MB': fmt(before.heap),
  },
];
for (let run = 1; run <= runs; run++) {
  let busy = 0;
  let slow = 0;
  const r = await autocannon({
    url: `http://127.0.0.1:${server.port}/v1/departments`,
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    // Constant body: autocannon's idReplacement keeps the template's Content-Length, and the server waits for bytes.
    body: JSON.stringify({ name: `Ward ${run}` }),
    connections,
    duration: seconds,
    timeout: 60,
    setupClient: (client) => {
      client.on('response', (status: number, _bytes: number, ms: number) => {
        if (status === 503) busy++;
        if (ms > 10_000) slow++;
      });
    },
  });
  // Idle for a moment so what a run left behind can be collected before memory is read.
  await new Promise((res) => setTimeout(res, 3000));
  const m = await memory(server.port);
  const seen = counted;
  counted = { total: m.total, within1s: m.within1s };
  rows.push({
    run,
    'req/s': fmt(r.requests.average),
    'p50 ms': r.latency.p50,
    'p99 ms': r.latency.p99,
    'max ms': r.latency.max,
    '>10 s': `${slow} (${fmt((100 * slow) / Math.max(1, r.requests.total), 1)}%)`,
    '503 busy': busy,
    errors: r.errors + r.timeouts,
    'server >1 s': m.total - seen.total - (m.within1s - seen.within1s),
    'rss MB': fmt(m.rss),
    'heap MB': fmt(m.heap),
  });
}
await server.stop();
await store.drop();
table(`SQLite, ${connections} concurrent writers (POST /v1/departments), ${runs} runs of ${seconds} s`, rows);
