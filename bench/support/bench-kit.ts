import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { SMTPServer } from 'smtp-server';
import { loadConfig } from '../../src/app/config.js';
import { type Container, createContainer } from '../../src/app/container.js';
import { createLogger } from '../../src/kernel/log.js';
import { freePort, stopChild } from '../../test/support/processes.js';

export const repoRoot = path.resolve(import.meta.dirname, '..', '..');
export const seconds = Number(process.env.MAILWARD_BENCH_SECONDS ?? 8);
export const PG_ADMIN_URL = process.env.MAILWARD_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export { freePort };

/**
 * The node arguments that run `mailward serve` for a bench: the TypeScript sources through tsx (default), or with
 * MAILWARD_BENCH_SERVER=dist the compiled build (`npm run build` first), as `npm start` runs it; profiles of the
 * compiled build name every function. MAILWARD_BENCH_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=DIR`) goes first.
 */
export const serveArgs = (): string[] => [
  ...(process.env.MAILWARD_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
  ...(process.env.MAILWARD_BENCH_SERVER === 'dist'
    ? [path.join(repoRoot, 'dist/src/cli/main.js')]
    : ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts')]),
  'serve',
];

export type Proc = { child: ChildProcess; port: number; stop: () => Promise<void> };

/**
 * Starts a server process and waits until `readyPath` answers 200. `cwd` runs another checkout (an old build to
 * compare); `onStdout` reads the process's log lines (stdout is ignored without it).
 */
export const startProcess = async (
  args: string[],
  env: Record<string, string>,
  readyPath = '/healthz',
  opts: { cwd?: string; onStdout?: (chunk: Buffer) => void } = {},
): Promise<Proc> => {
  const port = await freePort();
  const child = spawn(process.execPath, args, {
    cwd: opts.cwd ?? repoRoot,
    env: {
      ...process.env,
      ...env,
      PORT: String(port),
      MAILWARD_HTTP_PORT: String(port),
      MAILWARD_SMTP_PORT: env.MAILWARD_SMTP_PORT ?? String(await freePort()),
    },
    stdio: ['ignore', opts.onStdout ? 'pipe' : 'ignore', 'pipe'],
  });
  if (opts.onStdout) child.stdout?.on('data', opts.onStdout);
  let err = '';
  child.stderr?.on('data', (d) => {
    err += d;
  });
  // Generous: on a shared 2-core machine under load 30, a first start (keys, TLS certificate) took over a minute.
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`process exited: ${err}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}${readyPath}`)).ok) break;
    } catch {
      /* starting */
    }
    if (Date.now() > deadline) throw new Error(`not ready: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    port,
    stop: () => stopChild(child),
  };
};

/** A throwaway Mailward data dir (SQLite) or PostgreSQL database. */
export const benchStore = async (
  dialect: 'sqlite' | 'postgres',
  adminUrl = PG_ADMIN_URL,
): Promise<{ env: Record<string, string>; dataDir: string; database?: string; drop: () => Promise<void> }> => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `mw-bench-${dialect}-`));
  if (dialect === 'sqlite')
    return { env: { MAILWARD_DATA_DIR: dataDir }, dataDir, drop: async () => fs.rmSync(dataDir, { recursive: true, force: true }) };
  const name = `mw_bench_${Date.now().toString(36)}`;
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  await c.query(`create database ${name}`);
  await c.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    env: { MAILWARD_DATA_DIR: dataDir, DATABASE_URL: u.toString() },
    dataDir,
    database: name,
    drop: async () => {
      const d = new pg.Client({ connectionString: adminUrl });
      await d.connect();
      await d.query(`drop database if exists ${name} with (force)`);
      await d.end();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
};

export type LoadResult = { rps: number; p50: number; p99: number; errors: number; non2xx: number };

export const load = async (opts: {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections?: number;
  duration?: number;
}): Promise<LoadResult> => {
  const r = await autocannon({
    url: opts.url,
    method: opts.method ?? 'GET',
    headers: opts.headers,
    body: opts.body,
    connections: opts.connections ?? 50,
    duration: opts.duration ?? seconds,
  });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors, non2xx: r.non2xx };
};

export const table = (title: string, rows: Record<string, string | number>[]) => {
  const cols = Object.keys(rows[0] ?? {});
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (vals: string[]) => `| ${vals.map((v, i) => v.padEnd(width[i]!)).join(' | ')} |`;
  console.log(`\n${title}`);
  console.log(line(cols));
  console.log(`|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(cols.map((c) => String(r[c]))));
};

export const fmt = (n: number, digits = 0) => n.toFixed(digits);

/** A JSON REST caller for a bench server: `api(base, key)(method, path, body?)`; throws with the problem code on 4xx/5xx. */
export const api =
  (base: string, key: string) =>
  async (method: string, url: string, body?: unknown): Promise<any> => {
    const r = await fetch(`${base}${url}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const j = (await r.json()) as any;
    if (!r.ok) throw new Error(`${method} ${url}: ${r.status} ${j.code ?? JSON.stringify(j)}`);
    return j;
  };

/**
 * The outside sender of the inbound benches: an RSA-2048 DKIM key for `sel._domainkey.lab.example`, SPF allowing
 * loopback and DMARC p=reject, all in a `MAILWARD_DNS_OVERRIDES` file written to `dir`. Returns the file and the
 * private key (PEM) to sign with and the key's DKIM record (for a peer's own key table).
 */
export const outsideSender = (dir: string): { dnsFile: string; pem: string; dkimRecord: string } => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const dkimRecord = `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
  const dnsFile = path.join(dir, 'dns.json');
  fs.writeFileSync(
    dnsFile,
    JSON.stringify({
      TXT: {
        'sel._domainkey.lab.example': [dkimRecord],
        'lab.example': ['v=spf1 ip4:127.0.0.1 -all'],
        '_dmarc.lab.example': ['v=DMARC1; p=reject'],
      },
    }),
  );
  return { dnsFile, dkimRecord, pem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
};

/** A container on `env` (a bench store), initialised once with the bench organisation; logs silenced. */
export const openBenchContainer = async (env: Record<string, string | undefined>): Promise<Container> => {
  const c = await createContainer(loadConfig({ MAILWARD_LOG_LEVEL: 'silent', ...env }), {
    createMasterKey: true,
    logger: createLogger({ level: 'silent' }),
  });
  await c.init({ orgName: 'Bench Hospital', domain: 'bench.example' }, { onlyIfEmpty: true });
  return c;
};

/** The agent the audit benches append events for (an id-shaped constant; the bench organisation's chain). */
export const BENCH_AUDIT_ACTOR = {
  type: 'agent' as const,
  id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0',
  orgId: 'org_bench',
  chain: [
    { type: 'organization', id: 'org_bench', name: 'Bench Hospital' },
    { type: 'agent', id: 'agt_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0', name: 'Scheduler' },
  ],
};

/**
 * A loopback SMTP sink offering STARTTLS with `tls` (a selfSignedCert pair) that discards what it gets and counts
 * messages and sessions (`counter`; benches reset it between phases).
 */
export const startCountingSink = async (tls: { private: string | Buffer; cert: string | Buffer }) => {
  const counter = { received: 0, sessions: 0 };
  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['AUTH'],
    key: tls.private,
    cert: tls.cert,
    logger: false,
    onConnect(_s, cb) {
      counter.sessions++;
      cb();
    },
    onData(stream, _s, cb) {
      stream.on('data', () => {});
      stream.on('end', () => {
        counter.received++;
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.server.address() as { port: number }).port,
    counter,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
};

/** CPU ms (user + system) of one thread or process from its /proc stat line (USER_HZ 100). */
const statCpuMs = (file: string): number => {
  const f = fs.readFileSync(file, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
};

/**
 * CPU ms of a process's threads by kind: `main` (the event loop), `workers` (Mailward's named worker threads:
 * signing, analysis) and `other` (V8's compiler and GC helpers, libuv's pool, the SQLite checkpointer, which are
 * unnamed or named by Node). A thread that exited is not counted; Mailward's threads live as long as the server.
 */
export const threadCpuMs = (pid: number | undefined): { main: number; workers: number; other: number } => {
  const out = { main: 0, workers: 0, other: 0 };
  if (!pid) return out;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
      const ms = statCpuMs(`/proc/${pid}/task/${t}/stat`);
      if (Number(t) === pid) out.main += ms;
      else if (comm === 'signing' || comm === 'analysis') out.workers += ms;
      else out.other += ms;
    } catch {
      /* the thread exited meanwhile */
    }
  }
  return out;
};

/**
 * CPU ms of the PostgreSQL backends serving `database` (pg_stat_activity), by pid: taken before and after a phase,
 * the difference is what the database server spent for the bench (other jobs sharing the server are not counted;
 * a backend that both started and ended inside the phase is missed).
 */
export const pgBackendCpuMs = async (database: string, adminUrl = PG_ADMIN_URL): Promise<Map<number, number>> => {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    const r = await c.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1', [database]);
    const out = new Map<number, number>();
    for (const { pid } of r.rows) {
      try {
        out.set(pid, statCpuMs(`/proc/${pid}/stat`));
      } catch {
        /* ended meanwhile */
      }
    }
    return out;
  } finally {
    await c.end();
  }
};

/** What the backends in `after` spent since `before` (a backend new in `after` counts from zero). */
export const pgCpuSince = (before: Map<number, number>, after: Map<number, number>): number =>
  [...after].reduce((n, [pid, ms]) => n + ms - (before.get(pid) ?? 0), 0);
