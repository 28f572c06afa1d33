/**
 * Benchmark: authenticated GET /v1/me (key lookup, principal, chain,
 * store-backed rate limit) at 50 connections, against a bare fastify route in
 * the same run. Target: >= 50% of the bare figure, p99 < 10 ms.
 */
import fs from 'node:fs';
import path from 'node:path';
import { benchStore, fmt, load, repoRoot, startProcess, table } from './support/bench-kit.js';

const main = path.join(repoRoot, 'dist/src/cli/main.js');
if (!fs.existsSync(main)) throw new Error('run `npm run build` first (npm run bench does)');

const bare = await startProcess(['--import', 'tsx', path.join(repoRoot, 'bench/support/bare-server.ts')], {});
const bareResult = await load({ url: `http://127.0.0.1:${bare.port}/hello` });
await bare.stop();

const rows: Record<string, string | number>[] = [
  {
    target: 'bare fastify GET /hello',
    'req/s': fmt(bareResult.rps),
    'p50 ms': bareResult.p50,
    'p99 ms': bareResult.p99,
    'of bare': '100%',
    errors: bareResult.errors + bareResult.non2xx,
  },
];
const dialects = (process.env.MAILWARD_BENCH_DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[];
for (const dialect of dialects) {
  const store = await benchStore(dialect);
  const server = await startProcess([main, 'serve'], {
    ...store.env,
    MAILWARD_LOG_LEVEL: 'warn',
    MAILWARD_RATE_LIMIT_PER_MINUTE: '100000000',
  });
  const key = fs.readFileSync(path.join(store.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
  const r = await load({ url: `http://127.0.0.1:${server.port}/v1/me`, headers: { authorization: `Bearer ${key}` } });
  await server.stop();
  await store.drop();
  rows.push({
    target: `mailward GET /v1/me (${dialect})`,
    'req/s': fmt(r.rps),
    'p50 ms': r.p50,
    'p99 ms': r.p99,
    'of bare': `${fmt((100 * r.rps) / bareResult.rps)}%`,
    errors: r.errors + r.non2xx,
  });
}
table('Authenticated GET /v1/me vs bare fastify, 50 connections', rows);
