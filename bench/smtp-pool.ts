/**
 * Benchmark: the delivery pool (src/mail/smtp-pool.ts, on nodemailer's SMTPConnection, which reports the negotiated
 * TLS per message) against nodemailer's own `pool: true` transport with the settings delivery used before, sending the
 * same raw messages over STARTTLS to the same loopback sink. Target: the same messages/s within noise (no loss of
 * pooling speed). Runs alternate, twice each, so load from elsewhere falls on both.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTransport } from 'nodemailer';
import { createSmtpPool } from '../src/mail/smtp-pool.js';
import { selfSignedCert } from '../test/support/outbound-sink.js';
import { fmt, startCountingSink, table } from './support/bench-kit.js';

const N = Number(process.env.MAILWARD_BENCH_MESSAGES ?? 2000);
const CONCURRENCY = 16;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-pool-'));
const pems = selfSignedCert(dir);
const sink = await startCountingSink(pems);
const { port, counter } = sink;
const ca = fs.readFileSync(pems.caFile);
const raw = Buffer.from(
  `From: a@bench.example\r\nTo: b@clinic.example\r\nSubject: bench\r\nMessage-ID: <x@bench.example>\r\n\r\n${'line of text\r\n'.repeat(150)}`,
);
const envelope = { from: 'a@bench.example', to: ['b@clinic.example'] };
const common = {
  host: '127.0.0.1',
  port,
  secure: false,
  requireTLS: true,
  name: 'bench.example',
  tls: { rejectUnauthorized: true, ca },
  connectionTimeout: 30_000,
  greetingTimeout: 30_000,
  socketTimeout: 120_000,
};

const drive = async (send: () => Promise<unknown>) => {
  counter.received = 0;
  counter.sessions = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < N) await send();
    }),
  );
  const s = (performance.now() - t0) / 1000;
  if (counter.received !== N) throw new Error(`sink got ${counter.received} of ${N}`);
  return { rate: N / s, sessions: counter.sessions };
};

const viaNodemailerPool = async () => {
  const tr = createTransport({ pool: true, maxConnections: CONCURRENCY, maxMessages: 100, ...common });
  try {
    return await drive(() => tr.sendMail({ envelope, raw }));
  } finally {
    tr.close();
  }
};
const viaSmtpPool = async () => {
  const p = createSmtpPool({ maxConnections: CONCURRENCY, maxMessages: 100, ...common });
  try {
    return await drive(() => p.send(envelope, raw));
  } finally {
    p.close();
  }
};

const rows: Record<string, string>[] = [];
for (let round = 1; round <= 2; round++) {
  for (const [name, fn] of [
    ['nodemailer pool: true (before)', viaNodemailerPool],
    ['smtp-pool.ts (reports TLS)', viaSmtpPool],
  ] as const) {
    const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const r = await fn();
    rows.push({
      transport: `${name}, round ${round}`,
      'messages/s': fmt(r.rate),
      'SMTP sessions': String(r.sessions),
      'load average at start': load,
    });
  }
}
table(`${N} messages over STARTTLS, ${CONCURRENCY} at a time`, rows);
await sink.close();
