import Database from 'better-sqlite3';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
import { performance } from 'node:perf_hooks';
const commits: number[] = [];
const times = new Map<string, { n: number; ms: number }>();
const proto = Object.getPrototypeOf((new Database(':memory:')).prepare('select 1'));
for (const fn of ['run', 'all', 'get', 'iterate']) {
  const orig = proto[fn];
  proto[fn] = function (this: { source: string }, ...a: unknown[]) {
    const t = performance.now();
    try { return orig.apply(this, a); } finally {
      const k = this.source.replace(/\s+/g, ' ').slice(0, 110);
      const d = performance.now() - t; const e = times.get(k) ?? { n: 0, ms: 0 }; e.n++; e.ms += d; times.set(k, e); if (k === 'commit') commits.push(d);
    }
  };
}
const { createTestApp } = await import('/work/main/test/support/test-app.ts');
const { startSink, relayEnv, seedMailbox, drainDeliveries } = await import('/work/main/test/support/outbound-sink.ts');
const { tempDir } = await import('/work/main/test/support/dialects.ts');
const sink = await startSink(tempDir('sqlprof'));
const t = await createTestApp('sqlite', { env: relayEnv(sink) });
const s = await seedMailbox(t, 'autonomous');
if (process.env.NOCKPT) {
  const { sql } = await import('kysely');
  await sql`pragma wal_autocheckpoint = 0`.execute(t.c.store.db);
  const { Worker } = await import('node:worker_threads');
  const file = (await import('node:path')).join(t.dataDir, 'mailward.db');
  const w = new Worker(`const D = require(${JSON.stringify(require.resolve('better-sqlite3'))}); const db = new D(${JSON.stringify(file)}); db.pragma('busy_timeout = 5000'); setInterval(() => db.pragma('wal_checkpoint(PASSIVE)'), 500);`, { eval: true });
  w.unref();
}
const N = 300;
times.clear();
for (let i = 0; i < N; i++) {
  const r = await t.call('POST', `/v1/mailboxes/${s.mailbox.id}/send`, s.agentKey, { to: [`p${i}@clinic.example`], subject: `Reminder ${i}`, text: `Appointment ${i}` });
  if (r.status !== 202) throw new Error(JSON.stringify(r.body));
}
const sendTimes = new Map(times); times.clear();
await drainDeliveries(t);
const show = (m: Map<string, { n: number; ms: number }>, label: string) => {
  const tot = [...m.values()].reduce((a, b) => a + b.ms, 0);
  console.log(`${label}: ${(tot / N).toFixed(3)} ms/msg in SQLite, ${[...m.values()].reduce((a, b) => a + b.n, 0) / N} stmts/msg`);
  for (const [k, v] of [...m].sort((a, b) => b[1].ms - a[1].ms).slice(0, 14)) console.log(`  ${(v.ms / N).toFixed(3)} ms/msg  ${(v.n / N).toFixed(1)}x  ${k}`);
};
show(sendTimes, 'send');
show(times, 'deliver');
const sorted = commits.sort((a, b) => a - b); console.log('commits', sorted.length, 'p50', sorted[Math.floor(sorted.length * 0.5)]?.toFixed(2), 'p99', sorted[Math.floor(sorted.length * 0.99)]?.toFixed(2), 'max', sorted.at(-1)?.toFixed(2), '>10ms', sorted.filter((x) => x > 10).length);
await t.close(); await sink.close();
