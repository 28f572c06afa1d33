/**
 * Benchmark: POST /v1/vault/secrets/{name}/totp through the REST API
 * (key check, rate limit, secret read, envelope open, TOTP, audit write in the
 * same transaction) at 50 connections, against a bare fastify route in the
 * same run, on SQLite and PostgreSQL. Target on SQLite: >= 2,000 codes/s, p99 < 10 ms.
 * Runs the server from source (tsx), so no build is needed. A 2-second warm-up
 * precedes each measured load; the server's CPU time per request is reported
 * beside the rates (it assumes 100 ticks per second in /proc, as on Linux).
 */
import fs from 'node:fs';
import path from 'node:path';
import { api, benchStore, fmt, load, repoRoot, seconds, startProcess, table } from './support/bench-kit.js';

/**
 * CPU time (user + system, ms) a process has used, from /proc (Linux): on a
 * shared machine the server's CPU per request moves less than req/s does.
 */
const cpuMs = (pid: number | undefined): number | null => {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return null;
  }
};

const main = path.join(repoRoot, 'src/cli/main.ts');
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
    'server CPU us/req': '-',
    errors: bareResult.errors + bareResult.non2xx,
  },
];

const dialects = (process.env.MAILWARD_BENCH_DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[];
for (const dialect of dialects) {
  const store = await benchStore(dialect);
  const server = await startProcess(['--import', 'tsx', main, 'serve'], {
    ...store.env,
    MAILWARD_LOG_LEVEL: 'warn',
    MAILWARD_RATE_LIMIT_PER_MINUTE: '100000000',
  });
  try {
    const admin = api(`http://127.0.0.1:${server.port}`, fs.readFileSync(path.join(store.dataDir, 'bootstrap-admin.key'), 'utf8').trim());
    const dep = await admin('POST', '/v1/departments', { name: 'Bench' });
    const hum = await admin('POST', '/v1/humans', { name: 'Bench Reviewer', email: 'bench@mailward.localhost', roles: ['reviewer'] });
    const agent = await admin('POST', '/v1/agents', { name: 'Bench Agent', department_id: dep.id, responsible_human_id: hum.id });
    const { key } = await admin('POST', `/v1/agents/${agent.id}/api-keys`, {});
    await api(`http://127.0.0.1:${server.port}`, key)('PUT', '/v1/vault/secrets/bench-otp', {
      kind: 'totp',
      value: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ',
    });
    const before = Number((await admin('GET', '/v1/audit/events?action=vault.totp.generated&limit=1')).events.length);
    const url = `http://127.0.0.1:${server.port}/v1/vault/secrets/bench-otp/totp`;
    const headers = { authorization: `Bearer ${key}` };
    if (before !== 0) throw new Error('unexpected audit state');
    await load({ url, method: 'POST', headers, duration: 2 });
    const cpu0 = cpuMs(server.child.pid);
    const r = await load({ url, method: 'POST', headers });
    const cpu1 = cpuMs(server.child.pid);
    const perRequest = cpu0 !== null && cpu1 !== null ? fmt((1000 * (cpu1 - cpu0)) / (r.rps * seconds)) : '-';
    rows.push({
      target: `mailward POST .../totp (${dialect})`,
      'req/s': fmt(r.rps),
      'p50 ms': r.p50,
      'p99 ms': r.p99,
      'of bare': `${fmt((100 * r.rps) / bareResult.rps)}%`,
      'server CPU us/req': perRequest,
      errors: r.errors + r.non2xx,
    });
  } finally {
    await server.stop();
    await store.drop();
  }
}
table('TOTP codes through REST (incl. audit write) vs bare fastify, 50 connections', rows);
