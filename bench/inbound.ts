import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
// mailauth's types require top-level signing fields; at runtime several signatures go in signatureData.
import { type DKIMSignOptions, dkimSign } from 'mailauth';
import { createTransport } from 'nodemailer';
import { SMTPServer } from 'smtp-server';
import { selfSignedCert } from '../test/support/outbound-sink.js';
import {
  api,
  benchStore,
  fmt,
  freePort,
  outsideSender,
  pgBackendCpuMs,
  pgCpuSince,
  serveArgs,
  startProcess,
  table,
  threadCpuMs,
} from './support/bench-kit.js';
import { maildirCount, peersMissing, startOpenDkim, startPostfix, treeCpuMs } from './support/postfix.js';

const N = Number(process.env.MAILWARD_BENCH_MESSAGES ?? 2000);
// Messages each Mailward process receives before the measured phase (other Message-IDs, same shape): its code is
// then compiled and its caches warm, as in a server that has been running, so one and two processes compare fairly.
const WARMUP = Number(process.env.MAILWARD_BENCH_WARMUP ?? 200);
const CONNECTIONS = Number(process.env.MAILWARD_BENCH_SMTP_CONNECTIONS ?? 8);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-inbound-'));
// A self-signed pair for localhost (the tests' helper), served by Mailward's listener and trusted by the senders.
const pair = selfSignedCert(dir);
const keyFile = pair.keyFile;
const certFile = pair.caFile;
const ca = pair.cert;

// The outside sender: DKIM key, SPF allowing loopback, DMARC p=reject, all through MAILWARD_DNS_OVERRIDES.
const { dnsFile, pem, dkimRecord } = outsideSender(dir);

const TO = 'results-reader@bench.example';
const line = 'Your results from the cardiology lab are attached below; please call us about the follow-up visit. ';
const messages: Buffer[] = [];
for (let i = 0; i < N + 2 * WARMUP; i++) {
  const body = `Dear colleague,\r\n\r\n${Array.from({ length: 100 }, () => line).join('\r\n')}\r\nReference ${i}\r\n`;
  const raw = Buffer.from(
    `From: Lab Results <results@lab.example>\r\nTo: ${TO}\r\nSubject: Results ${i}\r\nMessage-ID: <bench.${i}.${Date.now()}@lab.example>\r\nDate: ${new Date().toUTCString()}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body}`,
  );
  const s = await dkimSign(raw, { signatureData: [{ signingDomain: 'lab.example', selector: 'sel', privateKey: pem }] } as DKIMSignOptions);
  messages.push(Buffer.concat([Buffer.from(s.signatures), raw]));
}
const avgKb = messages.slice(0, N).reduce((n, m) => n + m.length, 0) / N / 1024;
const measured = messages.slice(0, N);

/** CPU seconds (user + system, all threads) a process has used so far, from /proc (Linux). */
const cpuSeconds = (pid: number | undefined) => {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
};

/**
 * Sends every message over CONNECTIONS pooled STARTTLS connections (split evenly between the ports when there are
 * several: one per server process); returns seconds and how many got 250.
 */
const blast = async (port: number | number[], batch: Buffer[] = measured) => {
  const ports = Array.isArray(port) ? port : [port];
  const trs = ports.map((p) =>
    createTransport({
      host: '127.0.0.1',
      port: p,
      secure: false,
      requireTLS: true,
      pool: true,
      maxConnections: Math.max(1, Math.floor(CONNECTIONS / ports.length)),
      maxMessages: Infinity,
      tls: { ca, servername: 'localhost' },
    }),
  );
  let ok = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS * 2 }, async (_, c) => {
      const tr = trs[c % trs.length]!;
      while (next < batch.length) {
        const raw = batch[next++]!;
        try {
          const info = await tr.sendMail({ envelope: { from: 'results@lab.example', to: [TO] }, raw });
          if (/^250 /.test(String(info.response))) ok++;
        } catch {
          /* counted as not stored */
        }
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  for (const tr of trs) tr.close();
  return { secs, ok };
};

// Baseline: a bare smtp-server with the same certificate that reads and discards each message.
const sink = new SMTPServer({
  secure: false,
  disabledCommands: ['AUTH'],
  key: pair.private,
  cert: ca,
  logger: false,
  disableReverseLookup: true,
  size: 25 * 1024 * 1024,
  onData(stream, _s, cb) {
    stream.on('data', () => {});
    stream.on('end', () => cb());
  },
});
await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
await blast((sink.server.address() as { port: number }).port); // warm-up of the client side
const own0 = process.cpuUsage();
const bare = await blast((sink.server.address() as { port: number }).port);
const own = process.cpuUsage(own0);
// This process runs the client and the bare sink: their CPU per message, for comparison with the server's.
const bareCpuMs = (own.user + own.system) / 1000 / N;
sink.close();

const rows: Record<string, string | number>[] = [
  {
    target: 'bare smtp-server sink (STARTTLS, discards)',
    'messages/s': fmt(N / bare.secs),
    'of bare sink': '100%',
    'of Postfix + OpenDKIM': '-',
    stored: '-',
    'server CPU ms/message': `${fmt(bareCpuMs, 2)} (sink + client)`,
    'main / workers / other': '-',
    'PostgreSQL ms/message': '-',
  },
];

// Peers: Postfix from Debian on a loopback port (same certificate, same client, same messages), delivering each
// message to a Maildir (virtual(8)); once with an OpenDKIM milter verifying the signature, once plain.
// Messages/s counts up to the last 250 (Postfix has then fsynced its queue file, as Mailward has committed);
// the CPU is Postfix's whole process tree (and OpenDKIM's) up to the last message in the Maildir.
let postfixDkimSecs: number | undefined;
const missing = peersMissing();
if (missing) console.log(`peers skipped: ${missing}`);
else
  for (const withDkim of [true, false]) {
    const peerDir = path.join(dir, `postfix-${withDkim ? 'dkim' : 'plain'}`);
    const milter = withDkim
      ? await startOpenDkim(path.join(peerDir, 'opendkim'), {
          mode: 'v',
          testKeys: {
            'sel._domainkey.lab.example': dkimRecord,
          },
        })
      : undefined;
    const pf = await startPostfix(path.join(peerDir, 'postfix'), {
      milterPort: milter?.port,
      tls: { keyFile, certFile },
      maildirDomain: 'bench.example',
    });
    try {
      const cpu0 = treeCpuMs(pf.masterPid()) + (milter ? treeCpuMs(milter.pid) : 0);
      const t0 = performance.now();
      const r = await blast(pf.port);
      const deadline = Date.now() + 300_000;
      while (maildirCount(pf.dir) < r.ok && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      const deliveredSecs = (performance.now() - t0) / 1000;
      const cpuMs = (treeCpuMs(pf.masterPid()) + (milter ? treeCpuMs(milter.pid) : 0) - cpu0) / N;
      if (withDkim) {
        postfixDkimSecs = r.secs;
        const newDir = path.join(pf.dir, 'mail', 'maildir', 'new'); // virtual_mailbox_maps = static:maildir/
        const sample = fs.existsSync(newDir) ? fs.readdirSync(newDir)[0] : undefined;
        const text = sample ? fs.readFileSync(path.join(newDir, sample), 'utf8') : '';
        if (!/dkim=pass/.test(text)) console.log('warning: the Postfix + OpenDKIM peer did not record dkim=pass');
      }
      rows.push({
        target: withDkim ? 'Postfix + OpenDKIM milter (verify) -> Maildir' : 'plain Postfix -> Maildir',
        'messages/s': `${fmt(r.ok / r.secs)} (${fmt(r.ok / deliveredSecs)} into Maildir)`,
        'of bare sink': `${fmt((100 * bare.secs) / r.secs)}%`,
        'of Postfix + OpenDKIM': withDkim ? '100%' : `${fmt((100 * postfixDkimSecs!) / r.secs)}%`,
        stored: `${r.ok}/${N}`,
        'server CPU ms/message': `${fmt(cpuMs, 2)} (Postfix${milter ? ' + OpenDKIM' : ''})`,
        'main / workers / other': '-',
        'PostgreSQL ms/message': '-',
      });
    } finally {
      pf.stop();
      await milter?.stop();
    }
  }

const dialects = (process.env.MAILWARD_BENCH_DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[];
// MAILWARD_INBOUND_THREADS of the server: 0 analyses on the event loop, 1 (the default) on a worker thread.
const threadModes = (process.env.MAILWARD_BENCH_INBOUND_THREADS ?? '1').split(',');
// MAILWARD_BENCH_PG_PROCESSES=1,2: on PostgreSQL, also two `mailward serve` processes on one database, each with its
// own SMTP port (the client's connections split between them); CPU per message is both processes' together.
const pgProcessModes = (process.env.MAILWARD_BENCH_PG_PROCESSES ?? '1').split(',').map(Number);
for (const dialect of dialects)
  for (const threads of threadModes)
    for (const procs of dialect === 'postgres' ? pgProcessModes : [1]) {
      const store = await benchStore(dialect);
      const smtpPort = await freePort();
      const env = {
        ...store.env,
        // One master key for every process of the store.
        MAILWARD_MASTER_KEY: randomBytes(32).toString('base64'),
        MAILWARD_LOG_LEVEL: 'warn',
        MAILWARD_DOMAIN: 'bench.example',
        MAILWARD_DNS_OVERRIDES: dnsFile,
        MAILWARD_SMTP_TLS_KEY_FILE: keyFile,
        MAILWARD_SMTP_TLS_CERT_FILE: certFile,
        MAILWARD_SMTP_RATE_PER_MINUTE: '0',
        MAILWARD_SMTP_HOSTNAME: 'mx.bench.example',
        MAILWARD_SMTP_PORT: String(smtpPort),
        MAILWARD_INBOUND_THREADS: threads,
      };
      // MAILWARD_BENCH_NODE_ARGS (e.g. --cpu-prof --cpu-prof-dir=DIR) goes to the server process, for profiling (bench-kit serveArgs).
      const server = await startProcess(serveArgs(), env);
      const otherDir = procs > 1 ? fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-second-')) : null;
      const otherPort = await freePort();
      const second = otherDir
        ? await startProcess(serveArgs(), { ...env, MAILWARD_DATA_DIR: otherDir, MAILWARD_SMTP_PORT: String(otherPort) })
        : null;
      const servers = second ? [server, second] : [server];
      const serversCpu = () => servers.reduce((n, s) => n + cpuSeconds(s.child.pid), 0);
      const threadsCpu = () =>
        servers
          .map((s) => threadCpuMs(s.child.pid))
          .reduce((a, b) => ({ main: a.main + b.main, workers: a.workers + b.workers, other: a.other + b.other }));
      const pgCpu = () => (store.database ? pgBackendCpuMs(store.database) : Promise.resolve(new Map<number, number>()));
      const base = `http://127.0.0.1:${server.port}`;
      const admin = fs.readFileSync(path.join(store.dataDir, 'bootstrap-admin.key'), 'utf8').trim();
      const call = api(base, admin);
      const dep = await call('POST', '/v1/departments', { name: 'Cardiology' });
      const human = await call('POST', '/v1/humans', { name: 'Dr. Bench', email: 'bench@bench.example', roles: ['reviewer'] });
      const agent = await call('POST', '/v1/agents', { name: 'Results Reader', department_id: dep.id, responsible_human_id: human.id });
      await call('POST', '/v1/mailboxes', { agent_id: agent.id, address: TO, display_name: 'Results', oversight_mode: 'autonomous' });
      // Warm-up: WARMUP messages to each process, not measured.
      if (WARMUP > 0)
        for (const [i, p] of (second ? [smtpPort, otherPort] : [smtpPort]).entries())
          await blast(p, messages.slice(N + i * WARMUP, N + (i + 1) * WARMUP));
      const cpu0 = serversCpu();
      const threads0 = threadsCpu();
      const pg0 = await pgCpu();
      const client0 = process.cpuUsage();
      const r = await blast(second ? [smtpPort, otherPort] : smtpPort);
      const client = process.cpuUsage(client0);
      const cpuMs = ((serversCpu() - cpu0) * 1000) / N;
      const threads1 = threadsCpu();
      const pgPerMessage = store.database ? pgCpuSince(pg0, await pgCpu()) / N : null;
      const split = [threads1.main - threads0.main, threads1.workers - threads0.workers, threads1.other - threads0.other]
        .map((ms) => fmt(ms / N, 2))
        .join(' / ');
      await Promise.all(servers.map((s) => s.stop()));
      if (otherDir) fs.rmSync(otherDir, { recursive: true, force: true });
      await store.drop();
      rows.push({
        target: `mailward serve (${dialect}${procs > 1 ? `, ${procs} processes` : ''}, ${threads} analysis thread${threads === '1' ? '' : 's'}): auth + parse + PHI scan + seal + store + audit`,
        'messages/s': fmt(r.ok / r.secs),
        'of bare sink': `${fmt((100 * bare.secs) / r.secs)}%`,
        'of Postfix + OpenDKIM': postfixDkimSecs ? `${fmt((100 * postfixDkimSecs) / r.secs)}%` : '-',
        stored: `${r.ok}/${N}`,
        'server CPU ms/message': `${fmt(cpuMs, 2)} (client ${fmt((client.user + client.system) / 1000 / N, 2)})`,
        'main / workers / other': split,
        'PostgreSQL ms/message': pgPerMessage === null ? '-' : fmt(pgPerMessage, 2),
      });
    }
fs.rmSync(dir, { recursive: true, force: true });
table(
  `Inbound SMTP, ${N} messages of ${fmt(avgKb, 1)} KB over ${CONNECTIONS} connections (targets: >= 500 messages/s and >= 40% of the bare sink, SQLite)`,
  rows,
);
