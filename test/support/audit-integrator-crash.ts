/**
 * Child process for test/audit-integrator.test.ts: commits `count` audit events unsequenced (no integrator
 * runs), prints `committed`, then integrates them in batches of `batch` and, in the pass numbered `stallAt`
 * (1-based), stops after writing the batch but before its commit, printing `mid-batch`: the test kills it there.
 */
import { loadConfig } from '../../src/app/config.js';
import { createAuditService } from '../../src/audit/audit-service.js';
import { createIntegrator } from '../../src/audit/integrator.js';
import { systemActor } from '../../src/identity/principal.js';
import { systemClock } from '../../src/kernel/clock.js';
import { openStore } from '../../src/store/db.js';

const [count = '12', batch = '5', stallAt = '2'] = process.argv.slice(2);
const config = loadConfig(process.env);
const store = openStore(config.database);
const audit = createAuditService({ db: store.db, dialect: store.dialect, clock: systemClock });
for (let i = 0; i < Number(count); i++) {
  await store.db.transaction().execute((tx) => audit.record(tx, { action: 'test.crash', actor: systemActor(), details: { i } }));
}
process.stdout.write('committed\n');
let passes = 0;
const integrator = createIntegrator({
  db: store.db,
  dialect: store.dialect,
  intervalMs: 60_000,
  batch: Number(batch),
  beforeCommit: async () => {
    passes += 1;
    if (passes === Number(stallAt)) {
      process.stdout.write('mid-batch\n');
      await new Promise(() => undefined);
    }
  },
});
await integrator.sync();
process.stdout.write('finished\n');
await store.destroy();
