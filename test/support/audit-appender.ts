/**
 * Child process for test/audit-concurrency.test.ts: appends `count` audit
 * events from `lanes` concurrent loops to the store named by the environment,
 * signing a checkpoint now and then, as a second server process would.
 */
import { loadConfig } from '../../src/app/config.js';
import { createContainer } from '../../src/app/container.js';
import { systemActor } from '../../src/identity/principal.js';
import { createLogger } from '../../src/kernel/log.js';

const [count = '1000', lanes = '4', label = 'p'] = process.argv.slice(2);
const c = await createContainer(loadConfig(process.env), { logger: createLogger({ level: 'silent' }) });
const perLane = Math.ceil(Number(count) / Number(lanes));
await Promise.all(
  Array.from({ length: Number(lanes) }, async (_, lane) => {
    for (let i = 0; i < perLane; i++) {
      await c.audit.recordAlone({ action: 'test.concurrent', actor: systemActor(), orgId: null, details: { label, lane, i } });
      if (lane === 0 && i % 250 === 249) await c.auditLog.checkpoints.current();
    }
  }),
);
await c.close();
process.stdout.write(`${label} done\n`);
