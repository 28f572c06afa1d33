/**
 * Benchmark: MCP tool calls per second over streamable HTTP (stateless
 * /mcp, a new MCP server per request) for `whoami` and `get_totp_code`,
 * against the same calls over REST (GET /v1/me, POST /v1/vault/secrets/{name}/totp)
 * on the same server in the same run (SQLite). Target: MCP >= 50% of REST.
 * Two load shapes, both with 8 concurrent callers on one key (the per-key MCP
 * concurrency cap): autocannon sending raw JSON-RPC `tools/call` POSTs (what
 * the server sustains), and 8 official SDK clients calling tools in a loop
 * against 8 fetch loops on REST (what an agent host sees, client cost included).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { api, benchStore, fmt, load, repoRoot, seconds, startProcess, table } from './support/bench-kit.js';

const CALLERS = 8;
const main = path.join(repoRoot, 'src/cli/main.ts');
const store = await benchStore('sqlite');
const server = await startProcess(['--import', 'tsx', main, 'serve'], {
  ...store.env,
  MAILWARD_LOG_LEVEL: 'warn',
  MAILWARD_RATE_LIMIT_PER_MINUTE: '100000000',
});
const base = `http://127.0.0.1:${server.port}`;

/** CPU seconds (user + system, all threads) the server process has used so far, from /proc (Linux). */
const serverCpu = () => {
  const f = fs.readFileSync(`/proc/${server.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};

/** Runs `measure` and returns its result with the server's CPU milliseconds per request (`count` of them). */
const withCpu = async <T>(measure: () => Promise<T>, count: (r: T) => number) => {
  const before = serverCpu();
  const r = await measure();
  return { r, cpuMs: ((serverCpu() - before) * 1000) / Math.max(1, count(r)) };
};

/** Runs `fn` in `n` concurrent loops for `s` seconds; calls per second. */
const loops = async (n: number, s: number, fn: (i: number) => Promise<void>) => {
  const end = Date.now() + s * 1000;
  let count = 0;
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      while (Date.now() < end) {
        await fn(i);
        count++;
      }
    }),
  );
  return count / s;
};

const rows: Record<string, string | number>[] = [];
try {
  const admin = api(base, fs.readFileSync(path.join(store.dataDir, 'bootstrap-admin.key'), 'utf8').trim());
  const dep = await admin('POST', '/v1/departments', { name: 'Bench' });
  const hum = await admin('POST', '/v1/humans', { name: 'Bench Reviewer', email: 'bench@mailward.localhost', roles: ['reviewer'] });
  const agent = await admin('POST', '/v1/agents', { name: 'Bench Agent', department_id: dep.id, responsible_human_id: hum.id });
  const { key } = await admin('POST', `/v1/agents/${agent.id}/api-keys`, {});
  await api(base, key)('PUT', '/v1/vault/secrets/bench-otp', { kind: 'totp', value: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ' });

  const auth = { authorization: `Bearer ${key}` };
  const mcpHeaders = { ...auth, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const rpc = (name: string, args: Record<string, unknown>) =>
    JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } });
  const calls = [
    { tool: 'whoami', rest: { url: `${base}/v1/me`, method: 'GET' as const }, args: {} },
    {
      tool: 'get_totp_code',
      rest: { url: `${base}/v1/vault/secrets/bench-otp/totp`, method: 'POST' as const },
      args: { name: 'bench-otp' },
    },
  ];

  // A sanity check that the MCP call really succeeds (a 200 with isError would inflate the figure).
  for (const c of calls) {
    const r = await fetch(`${base}/mcp`, { method: 'POST', headers: mcpHeaders, body: rpc(c.tool, c.args) });
    const j = (await r.json()) as { result?: { isError?: boolean } };
    if (!r.ok || !j.result || j.result.isError) throw new Error(`MCP ${c.tool} failed: ${JSON.stringify(j)}`);
  }

  for (const c of calls) {
    await load({ url: c.rest.url, method: c.rest.method, headers: auth, connections: CALLERS, duration: 2 });
    const rest = await withCpu(
      () => load({ url: c.rest.url, method: c.rest.method, headers: auth, connections: CALLERS }),
      (x) => x.rps * seconds,
    );
    await load({ url: `${base}/mcp`, method: 'POST', headers: mcpHeaders, body: rpc(c.tool, c.args), connections: CALLERS, duration: 2 });
    const mcp = await withCpu(
      () => load({ url: `${base}/mcp`, method: 'POST', headers: mcpHeaders, body: rpc(c.tool, c.args), connections: CALLERS }),
      (x) => x.rps * seconds,
    );
    rows.push({
      call: c.tool,
      load: `autocannon, ${CALLERS} connections`,
      'REST req/s': fmt(rest.r.rps),
      'REST p99 ms': rest.r.p99,
      'REST CPU ms/req': fmt(rest.cpuMs, 2),
      'MCP calls/s': fmt(mcp.r.rps),
      'MCP p99 ms': mcp.r.p99,
      'MCP CPU ms/call': fmt(mcp.cpuMs, 2),
      'MCP of REST': `${fmt((100 * mcp.r.rps) / rest.r.rps)}%`,
      errors: rest.r.errors + rest.r.non2xx + mcp.r.errors + mcp.r.non2xx,
    });
  }

  // autocannon drops its connections with requests in flight; their slots come back as the server sees the sockets close.
  for (let i = 0; ; i++) {
    const r = await fetch(`${base}/mcp`, { method: 'POST', headers: mcpHeaders, body: rpc('whoami', {}) });
    await r.arrayBuffer();
    if (r.status === 200) break;
    if (i > 100) throw new Error(`MCP slots did not come back: ${r.status}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  const clients = await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      const client = new Client({ name: 'bench', version: '1' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: auth } }));
      return client;
    }),
  );
  let failures = 0;
  for (const c of calls) {
    const restCall = async () => {
      const r = await fetch(c.rest.url, { method: c.rest.method, headers: auth });
      await r.arrayBuffer();
      if (!r.ok) failures++;
    };
    const mcpCall = (i: number) => async () => {
      const r = await clients[i]!.callTool({ name: c.tool, arguments: c.args });
      if (r.isError) failures++;
    };
    await loops(CALLERS, 2, restCall);
    const rest = await withCpu(
      () => loops(CALLERS, seconds, restCall),
      (x) => x * seconds,
    );
    await loops(CALLERS, 2, (i) => mcpCall(i)());
    const mcp = await withCpu(
      () => loops(CALLERS, seconds, (i) => mcpCall(i)()),
      (x) => x * seconds,
    );
    rows.push({
      call: c.tool,
      load: `${CALLERS} SDK clients vs ${CALLERS} fetch loops`,
      'REST req/s': fmt(rest.r),
      'REST p99 ms': '-',
      'REST CPU ms/req': fmt(rest.cpuMs, 2),
      'MCP calls/s': fmt(mcp.r),
      'MCP p99 ms': '-',
      'MCP CPU ms/call': fmt(mcp.cpuMs, 2),
      'MCP of REST': `${fmt((100 * mcp.r) / rest.r)}%`,
      errors: failures,
    });
  }
  for (const c of clients) await c.close();
} finally {
  await server.stop();
  await store.drop();
}

table(
  `MCP over streamable HTTP vs REST, same server, SQLite (${seconds} s per load; target: MCP >= 50% of REST; CPU = server process user+system per request; load average ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')})`,
  rows,
);
