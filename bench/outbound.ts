/**
 * Benchmark: outbound mail end to end. Messages/s from POST
 * /v1/mailboxes/{id}/send (autonomous mailbox) to acceptance at a loopback
 * SMTP sink (STARTTLS, both DKIM signatures, X-Agent-Identity), against plain
 * nodemailer sending the same messages to the same sink without signing; and
 * the `send` accept latency at 100 requests/s. Targets (2 cores, SQLite):
 * >= 300 messages/s end to end, p99 accept < 25 ms at 100 req/s.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { createTransport } from 'nodemailer';
import { selfSignedCert } from '../test/support/outbound-sink.js';
import {
  api,
  benchStore,
  fmt,
  pgBackendCpuMs,
  pgCpuSince,
  serveArgs,
  startCountingSink,
  startProcess,
  table,
  threadCpuMs,
} from './support/bench-kit.js';
import { peersMissing, SMTP_SOURCE, startOpenDkim, startPostfix, treeCpuMs } from './support/postfix.js';

const N = Number(process.env.MAILWARD_BENCH_MESSAGES ?? 1000);
// Messages each Mailward process sends before the measured phase: its code is then compiled and its caches warm,
// as in a server that has been running, so one and two processes compare fairly.
const WARMUP = Number(process.env.MAILWARD_BENCH_WARMUP ?? 200);
const CONCURRENCY = 32;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-outbound-'));
// A self-signed pair for localhost (the tests' helper): the sink offers STARTTLS, Mailward trusts it as its CA.
const tls = selfSignedCert(dir);
const cert = tls.caFile;

const sink = await startCountingSink(tls);
const { port: sinkPort, counter } = sink;
const waitFor = async (n: number) => {
  const end = Date.now() + 300_000;
  while (counter.received < n) {
    if (Date.now() > end) throw new Error(`sink got ${counter.received} of ${n}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** CPU time (user + system, all threads) a process has used, in ms: a figure other load on a shared machine hardly moves. */
const cpuMs = (pid: number | undefined) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
};

const message = (i: number) => ({
  to: [`patient${i}@clinic.example`],
  subject: `Appointment reminder ${i}`,
  text: `Dear patient,\n\nyour appointment is on Tuesday at 10:00 (ref ${i}).\n\nCardiology`,
});

// Baseline: plain nodemailer, pooled connections, STARTTLS, no signing.
const baselineTransport = createTransport({
  host: '127.0.0.1',
  port: sinkPort,
  pool: true,
  maxConnections: CONCURRENCY,
  maxMessages: Infinity,
  requireTLS: true,
  tls: { ca: fs.readFileSync(cert) },
});
const t0 = performance.now();
await Promise.all(Array.from({ length: N }, (_, i) => baselineTransport.sendMail({ from: 'bot@bench.example', ...message(i) })));
const baselineSecs = (performance.now() - t0) / 1000;
baselineTransport.close();
counter.received = 0;

const rows: Record<string, string | number>[] = [
  {
    target: 'plain nodemailer (pooled, STARTTLS, unsigned)',
    'messages/s': fmt(N / baselineSecs),
    'of baseline': '100%',
    'of Postfix + OpenDKIM': '-',
    'server CPU ms/msg': '-',
    'main / workers / other': '-',
    'PostgreSQL ms/msg': '-',
    'accept p50 ms': '-',
    'accept p99 ms': '-',
  },
];

// Peer: smtp-source (32 sessions) -> Postfix from Debian on a loopback port with an OpenDKIM milter signing
// (one RSA-2048 signature) -> the same sink over STARTTLS. Timed until the sink has accepted all N; the CPU
// is Postfix's whole process tree and OpenDKIM's.
let postfixSecs: number | undefined;
const missing = peersMissing();
if (missing) console.log(`peers skipped: ${missing}`);
else {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const milter = await startOpenDkim(path.join(dir, 'opendkim'), {
    mode: 's',
    domain: 'bench.example',
    selector: 'peer',
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  });
  const pf = await startPostfix(path.join(dir, 'postfix'), { milterPort: milter.port, relayPort: sinkPort });
  try {
    const m = message(0);
    const file = path.join(dir, 'peer-message.eml');
    fs.writeFileSync(
      file,
      `From: Reminders <bot@bench.example>\nTo: ${m.to[0]}\nSubject: ${m.subject}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n${m.text}\n`,
    );
    counter.received = 0;
    const cpu0 = treeCpuMs(pf.masterPid()) + treeCpuMs(milter.pid);
    const t = performance.now();
    await new Promise<void>((resolve, reject) =>
      execFile(
        SMTP_SOURCE,
        ['-d', '-s', String(CONCURRENCY), '-m', String(N), '-F', file, '-f', 'bot@bench.example', '-t', m.to[0]!, `127.0.0.1:${pf.port}`],
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    await waitFor(N);
    postfixSecs = (performance.now() - t) / 1000;
    const cpu = (treeCpuMs(pf.masterPid()) + treeCpuMs(milter.pid) - cpu0) / N;
    rows.push({
      target: 'smtp-source -> Postfix + OpenDKIM (1x RSA) -> sink',
      'messages/s': fmt(N / postfixSecs),
      'of baseline': `${fmt((100 * baselineSecs) / postfixSecs)}%`,
      'of Postfix + OpenDKIM': '100%',
      'server CPU ms/msg': `${cpu.toFixed(2)} (Postfix + OpenDKIM)`,
      'main / workers / other': '-',
      'PostgreSQL ms/msg': '-',
      'accept p50 ms': '-',
      'accept p99 ms': '-',
    });
  } finally {
    pf.stop();
    await milter.stop();
  }
  counter.received = 0;
}

const dialects = (process.env.MAILWARD_BENCH_DIALECTS ?? 'sqlite').split(',') as ('sqlite' | 'postgres')[];
// MAILWARD_SIGNING_THREADS: 0 signs on the event loop, 1 on a worker thread.
const threadModes = (process.env.MAILWARD_BENCH_SIGNING_THREADS ?? '0,1').split(',');
// MAILWARD_BENCH_PG_PROCESSES=1,2: on PostgreSQL, also two `mailward serve` processes on one database (sends split
// between them, each delivering what it claims); CPU per message is both processes' together.
const pgProcessModes = (process.env.MAILWARD_BENCH_PG_PROCESSES ?? '1').split(',').map(Number);
for (const dialect of dialects)
  for (const threads of threadModes)
    for (const procs of dialect === 'postgres' ? pgProcessModes : [1]) {
      const store = await benchStore(dialect);
      // One master key for every process of the store (the first one's data dir holds the bootstrap admin key).
      const masterKey = randomBytes(32).toString('base64');
      const env = {
        ...store.env,
        MAILWARD_MASTER_KEY: masterKey,
        MAILWARD_LOG_LEVEL: 'warn',
        MAILWARD_RATE_LIMIT_PER_MINUTE: '100000000',
        MAILWARD_DOMAIN: 'bench.example',
        MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${sinkPort}`,
        MAILWARD_SMTP_TLS_CA_FILE: cert,
        MAILWARD_DELIVERY_POLL_MS: '50',
        MAILWARD_DELIVERY_CONCURRENCY: String(CONCURRENCY),
        MAILWARD_SIGNING_THREADS: threads,
      };
      // MAILWARD_BENCH_NODE_ARGS (e.g. --cpu-prof) goes to the server process, for profiling (bench-kit serveArgs).
      const server = await startProcess(serveArgs(), env);
      const otherDir = procs > 1 ? fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-second-')) : null;
      const second = otherDir ? await startProcess(serveArgs(), { ...env, MAILWARD_DATA_DIR: otherDir }) : null;
      const servers = second ? [server, second] : [server];
      const serversCpu = () => servers.reduce((n, s) => n + cpuMs(s.child.pid), 0);
      const threadsCpu = () =>
        servers
          .map((s) => threadCpuMs(s.child.pid))
          .reduce((a, b) => ({ main: a.main + b.main, workers: a.workers + b.workers, other: a.other + b.other }));
      const pgCpu = () => (store.database ? pgBackendCpuMs(store.database) : Promise.resolve(new Map<number, number>()));
      const base = `http://127.0.0.1:${server.port}`;
      const admin = fs.readFileSync(path.join(store.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
      const call = (method: string, p: string, k: string, body?: unknown) => api(base, k)(method, p, body);
      const dep = await call('POST', '/v1/departments', admin, { name: 'Cardiology' });
      const human = await call('POST', '/v1/humans', admin, { name: 'Dr. Bench', email: 'bench@bench.example', roles: ['reviewer'] });
      const agent = await call('POST', '/v1/agents', admin, {
        name: 'Reminder Bot',
        department_id: dep.id,
        responsible_human_id: human.id,
      });
      const agentKey = (await call('POST', `/v1/agents/${agent.id}/api-keys`, admin, {})).key!;
      const mbx = await call('POST', '/v1/mailboxes', admin, {
        agent_id: agent.id,
        display_name: 'Reminders',
        oversight_mode: 'autonomous',
      });

      // Warm-up, not measured: WARMUP sends to each process, all delivered.
      if (WARMUP > 0) {
        counter.received = 0;
        for (const s of servers)
          await Promise.all(
            Array.from({ length: CONCURRENCY }, async (_, c) => {
              for (let i = c; i < WARMUP; i += CONCURRENCY)
                await api(`http://127.0.0.1:${s.port}`, agentKey)('POST', `/v1/mailboxes/${mbx.id}/send`, message(i));
            }),
          );
        await waitFor(WARMUP * servers.length);
        counter.received = 0;
      }
      // End to end: N sends with 32 in flight (split between the processes), timed until the sink has accepted all N.
      const cpu0 = serversCpu();
      const threads0 = threadsCpu();
      const pg0 = await pgCpu();
      const t1 = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async (_, c) => {
          const to = `http://127.0.0.1:${servers[c % servers.length]!.port}`;
          while (next < N) {
            const i = next++;
            await api(to, agentKey)('POST', `/v1/mailboxes/${mbx.id}/send`, message(i));
          }
        }),
      );
      await waitFor(N);
      const e2eSecs = (performance.now() - t1) / 1000;
      const cpuPerMessage = (serversCpu() - cpu0) / N;
      const threads1 = threadsCpu();
      const pgPerMessage = store.database ? pgCpuSince(pg0, await pgCpu()) / N : null;
      const split = [threads1.main - threads0.main, threads1.workers - threads0.workers, threads1.other - threads0.other]
        .map((ms) => (ms / N).toFixed(2))
        .join(' / ');

      // Accept latency at a steady 100 requests/s. First into a gated_send mailbox (held: the same request work,
      // no delivery), then into the autonomous one with delivery running meanwhile: the difference is what
      // delivery costs a sender.
      counter.received = 0;
      const load = (mailboxId: string) =>
        autocannon({
          url: `${base}/v1/mailboxes/${mailboxId}/send`,
          method: 'POST',
          headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' },
          body: JSON.stringify(message(0)),
          connections: 10,
          overallRate: 100,
          duration: Number(process.env.MAILWARD_BENCH_SECONDS ?? 8),
        });
      const gated = await call('POST', '/v1/mailboxes', admin, {
        agent_id: agent.id,
        address: `held.${Date.now()}@bench.example`,
        display_name: 'Held',
        oversight_mode: 'gated_send',
      });
      const held = await load(gated.id!);
      const lat = await load(mbx.id!);
      await Promise.all(servers.map((s) => s.stop()));
      if (otherDir) fs.rmSync(otherDir, { recursive: true, force: true });
      await store.drop();
      rows.push({
        target: `mailward send -> sink (${dialect}${procs > 1 ? `, ${procs} processes` : ''}, signing threads ${threads}; 2x DKIM + JWS)`,
        'messages/s': fmt(N / e2eSecs),
        'of baseline': `${fmt((100 * baselineSecs) / e2eSecs)}%`,
        'of Postfix + OpenDKIM': postfixSecs ? `${fmt((100 * postfixSecs) / e2eSecs)}%` : '-',
        'server CPU ms/msg': cpuPerMessage.toFixed(2),
        'main / workers / other': split,
        'PostgreSQL ms/msg': pgPerMessage === null ? '-' : pgPerMessage.toFixed(2),
        'accept p50 ms': lat.latency.p50,
        'accept p99 ms': `${lat.latency.p99}${lat.non2xx + lat.errors > 0 ? ` (${lat.non2xx + lat.errors} errors)` : ''}`,
      });
      rows.push({
        target: `  same, send into a gated_send mailbox (held, no delivery)`,
        'messages/s': '-',
        'of baseline': '-',
        'of Postfix + OpenDKIM': '-',
        'server CPU ms/msg': '-',
        'main / workers / other': '-',
        'PostgreSQL ms/msg': '-',
        'accept p50 ms': held.latency.p50,
        'accept p99 ms': `${held.latency.p99}${held.non2xx + held.errors > 0 ? ` (${held.non2xx + held.errors} errors)` : ''}`,
      });
    }
await sink.close();
fs.rmSync(dir, { recursive: true, force: true });
table(`Outbound mail, ${N} messages end to end (targets: >= 300 messages/s, p99 accept < 25 ms at 100 req/s)`, rows);
