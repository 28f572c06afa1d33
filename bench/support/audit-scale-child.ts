/**
 * Child of bench/audit-scale.ts: one server-like process appending audit events (each in the transaction
 * of its own "change", as a request would) from `lanes` loops for `seconds`, starting at `startAt` (epoch ms).
 * Its integrator runs as in `serve`. With `rate` (events/s, all lanes together) the appends are paced to that steady
 * rate instead of running flat out. Prints one JSON line: ops, CPU ms (user + system), wall ms.
 */
import { loadConfig } from '../../src/app/config.js';
import { createContainer } from '../../src/app/container.js';
import { createLogger } from '../../src/kernel/log.js';
import { BENCH_AUDIT_ACTOR } from './bench-kit.js';

const [lanes = '8', seconds = '5', startAt = '0', label = 'p', rate = '0'] = process.argv.slice(2);
const c = await createContainer(loadConfig({ MAILWARD_LOG_LEVEL: 'silent', ...process.env }), {
  logger: createLogger({ level: 'silent' }),
});
const actor = BENCH_AUDIT_ACTOR;
await new Promise((r) => setTimeout(r, Math.max(0, Number(startAt) - Date.now())));
const cpu0 = process.cpuUsage();
const t0 = Date.now();
const end = t0 + Number(seconds) * 1000;
let ops = 0;
await Promise.all(
  Array.from({ length: Number(lanes) }, async (_, lane) => {
    let i = 0;
    while (Date.now() < end) {
      if (Number(rate) > 0) {
        // The i-th append of this lane is due at t0 + (i * lanes + lane) / rate seconds.
        const due = t0 + ((i * Number(lanes) + lane) * 1000) / Number(rate);
        if (due >= end) break;
        if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      }
      await c.store.db.transaction().execute((tx) =>
        c.audit.record(tx, {
          action: 'email.read',
          actor,
          target: { type: 'message', id: `msg_${label}_${lane}_${i++}` },
          requestId: 'req_bench',
          clientIp: '10.0.0.1',
          contentHash: 'ab'.repeat(32),
          details: { mailbox_id: 'mbx_1', bytes: 1234 },
        }),
      );
      ops++;
    }
  }),
);
const wall = Date.now() - t0;
const cpu = process.cpuUsage(cpu0);
await c.close();
process.stdout.write(`${JSON.stringify({ label, ops, cpuMs: (cpu.user + cpu.system) / 1000, wallMs: wall })}\n`);
