/**
 * A second process for the search index concurrency test (test/search-index.test.ts): stores COUNT messages in
 * MAILBOX_ID, in small transactions, each holding the word `w<label>n<i>` and the word `shared`, and folds the
 * mailbox's pending entries after every batch (a forced compaction every other time), racing the other process.
 * Usage: node --import tsx test/support/search-inserter.ts <count> <label> (store from the environment).
 */
import { loadConfig } from '../../src/app/config.js';
import { createContainer } from '../../src/app/container.js';
import { createLogger } from '../../src/kernel/log.js';
import { seedMessages } from './inbound-seed.js';
import type { TestApp } from './test-app.js';

const [count, label] = [Number(process.argv[2]), process.argv[3]!];
const mailbox = { id: process.env.MAILBOX_ID!, address: process.env.MAILBOX_ADDRESS! };
const c = await createContainer(loadConfig(process.env), { logger: createLogger({ level: 'silent' }) });
try {
  const t = { c, orgId: process.env.ORG_ID!, domain: 'hospital.example' } as unknown as TestApp;
  for (let i = 0, k = 0; i < count; i += 10, k++) {
    await seedMessages(
      t,
      mailbox,
      Array.from({ length: Math.min(10, count - i) }, (_, j) => ({
        from: `p${label}@clinic.example`,
        subject: `Note ${label}`,
        text: `w${label}n${i + j} shared`,
      })),
      { compact: false },
    );
    await c.mail.searchCompactor.runOnce({ force: k % 2 === 0, mailboxId: mailbox.id });
  }
  console.log(`${label} done`);
} finally {
  await c.close();
}
