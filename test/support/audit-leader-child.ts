/**
 * Child process for test/audit-leadership.test.ts: opens the store, starts the audit integrator with the store's
 * leadership (`Store.lead`), as `mailward serve` does, with the pass intervals from argv (`intervalMs followerMs`),
 * and answers lines on stdin: `commit N TAG` commits N audit events, one transaction each, then prints
 * `committed TAG`. It prints `leader` when it becomes the leader and `ready` once started. It never calls
 * `sync`: whatever integrates its events is the leader's loop (or the follower's safety net).
 */
import readline from 'node:readline';
import { loadConfig } from '../../src/app/config.js';
import { createAuditService } from '../../src/audit/audit-service.js';
import { systemActor } from '../../src/identity/principal.js';
import { systemClock } from '../../src/kernel/clock.js';
import { openStore } from '../../src/store/db.js';

const [intervalMs = '100', followerMs = '60000'] = process.argv.slice(2);
const store = openStore(loadConfig(process.env).database);
const audit = createAuditService({
  db: store.db,
  dialect: store.dialect,
  clock: systemClock,
  integrateMs: Number(intervalMs),
  ...(store.lead
    ? {
        lead: (role: number, onChange: (isLeader: boolean) => void) =>
          store.lead!(role, (isLeader) => {
            if (isLeader) process.stdout.write('leader\n');
            onChange(isLeader);
          }),
      }
    : {}),
  followerMs: Number(followerMs),
});
store.listen(audit.wakeIntegrator);
audit.startIntegrator();
process.stdout.write('ready\n');
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [cmd, n, tag] = line.trim().split(' ');
  if (cmd !== 'commit') continue;
  for (let i = 0; i < Number(n); i++)
    await store.db.transaction().execute((tx) => audit.record(tx, { action: 'test.leader', actor: systemActor(), details: { tag, i } }));
  process.stdout.write(`committed ${tag}\n`);
}
