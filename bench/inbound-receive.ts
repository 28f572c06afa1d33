/**
 * The inbound store path without SMTP: MAILWARD_BENCH_MESSAGES (600) messages of the same shape as bench/inbound.ts
 * given to the receive service directly, 8 in flight (analysis on its worker thread, the group commit as in
 * `serve`), after a warm-up of 200, on each dialect of MAILWARD_BENCH_DIALECTS. Prints the event loop's CPU per
 * message (this process's main thread, /proc, Linux) and the whole process's: what the store transaction's
 * statements cost, without the TLS and SMTP work that dominates bench/inbound.ts's noise on a shared machine.
 */
import fs from 'node:fs';
import { seedMailbox } from '../test/support/outbound-sink.js';
import { createTestApp } from '../test/support/test-app.js';
import { fmt, table } from './support/bench-kit.js';

const N = Number(process.env.MAILWARD_BENCH_MESSAGES ?? 600);
const WARMUP = 200;
const dialects = (process.env.MAILWARD_BENCH_DIALECTS ?? 'sqlite,postgres').split(',') as ('sqlite' | 'postgres')[];
const line = 'Your results from the cardiology lab are attached below; please call us about the follow-up visit. ';

/** This thread's CPU ms so far (utime + stime of the main task). */
const mainCpuMs = () => {
  const f = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
};

const rows: Record<string, string | number>[] = [];
for (const dialect of dialects) {
  const t = await createTestApp(dialect);
  const box = await seedMailbox(t, 'autonomous');
  const to = box.mailbox.address as string;
  const msg = (i: number) =>
    Buffer.from(
      `From: Lab <results@lab.example>\r\nTo: ${to}\r\nSubject: Results ${i}\r\nMessage-ID: <receive.${i}.${Date.now()}@lab.example>\r\n` +
        `Date: ${new Date().toUTCString()}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n` +
        `Dear colleague,\r\n\r\n${Array.from({ length: 100 }, () => line).join('\r\n')}\r\nReference ${i}\r\n`,
    );
  const env = { mailFrom: 'results@lab.example', rcptTo: [to], clientIp: '127.0.0.1', helo: 'lab.example', tls: true };
  const run = async (n: number, base: number) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < n) await t.c.inbound.receiver.receive(env, msg(base + next++));
      }),
    );
  };
  await run(WARMUP, 1_000_000);
  const main0 = mainCpuMs();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run(N, 0);
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  rows.push({
    dialect,
    messages: N,
    'messages/s': fmt(N / secs),
    'event loop CPU ms/message': fmt((mainCpuMs() - main0) / N, 2),
    'process CPU ms/message': fmt((cpu.user + cpu.system) / 1000 / N, 2),
    'analysis threads': t.c.inbound.pool.usingThreads() ? 'yes' : 'no',
  });
  await t.close();
}
table(`Inbound receive() without SMTP, ${N} messages, 8 in flight`, rows);
process.exit(0);
