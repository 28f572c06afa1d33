import fs from 'node:fs';
import { sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import { AppError } from '../kernel/errors.js';
import type { Store } from './db.js';
import * as m0001 from './migrations/0001-foundation.js';
import * as m0002 from './migrations/0002-audit-log.js';
import * as m0003 from './migrations/0003-vault.js';
import * as m0004 from './migrations/0004-outbound-mail.js';
import * as m0005 from './migrations/0005-consent.js';
import * as m0006 from './migrations/0006-phi-holds.js';
import * as m0007 from './migrations/0007-inbound-mail.js';
import * as m0009ApprovalsCategory from './migrations/0009-approvals-category.js';
import * as m0010InboundTagsAndDmarc from './migrations/0010-inbound-tags-and-dmarc.js';
import * as m0011DomainEvents from './migrations/0011-domain-events.js';
import * as m0012MessageRetention from './migrations/0012-message-retention.js';
import * as m0013HumanSignIn from './migrations/0013-human-sign-in.js';
import * as m0014ApprovalSignatures from './migrations/0014-approval-signatures.js';
import * as m0015WitnessCosignatures from './migrations/0015-witness-cosignatures.js';
import * as m0018Webhooks from './migrations/0018-webhooks.js';
import * as m0020RevisionsPart2 from './migrations/0020-revisions-part2-consent-policy.js';
import * as m0021Templates from './migrations/0021-templates.js';
import * as m0022ReviewNotifications from './migrations/0022-review-notifications.js';
import * as m0024OnBehalfOf from './migrations/0024-on-behalf-of.js';
import * as m0025RecipientIndex from './migrations/0025-recipient-index.js';
import * as m0026BreachWorkbench from './migrations/0026-breach-workbench.js';
import * as m0027OauthRecords from './migrations/0027-oauth-records.js';
import * as m0028OauthGrantedBy from './migrations/0028-oauth-granted-by.js';
import * as m0030AuditPending from './migrations/0030-audit-pending.js';
import * as m0032SearchIndex from './migrations/0032-search-index.js';
import * as m0038SealedBinary from './migrations/0038-sealed-binary.js';
import * as m0039OauthRecordsAccount from './migrations/0039-oauth-records-account.js';
import * as m0040AuditCompact from './migrations/0040-audit-compact.js';
import * as m0041SearchSegments from './migrations/0041-search-segments.js';
import * as m0042AuditCompact2 from './migrations/0042-audit-compact2.js';
import * as m0043WebhookDeliveriesWaitingIndex from './migrations/0043-webhook-deliveries-waiting-index.js';
import * as m0044OauthClientOrgs from './migrations/0044-oauth-client-orgs.js';
import * as m0045WebhookRangeLeases from './migrations/0045-webhook-range-leases.js';
import * as m0046AuditCompact3 from './migrations/0046-audit-compact3.js';
import * as m0047MessageSubmissionEvent from './migrations/0047-message-submission-event.js';
import * as m0048AuditKinds from './migrations/0048-audit-kinds.js';

/** Migrations in order. Names are frozen once released; add, never edit. */
export const MIGRATIONS: Record<string, Migration> = {
  '0001-foundation': m0001,
  '0002-audit-log': m0002,
  '0003-vault': m0003,
  '0004-outbound-mail': m0004,
  '0005-consent': m0005,
  '0006-phi-holds': m0006,
  '0007-inbound-mail': m0007,
  '0009-approvals-category': m0009ApprovalsCategory,
  '0010-inbound-tags-and-dmarc': m0010InboundTagsAndDmarc,
  '0011-domain-events': m0011DomainEvents,
  '0012-message-retention': m0012MessageRetention,
  '0013-human-sign-in': m0013HumanSignIn,
  '0014-approval-signatures': m0014ApprovalSignatures,
  '0015-witness-cosignatures': m0015WitnessCosignatures,
  '0018-webhooks': m0018Webhooks,
  '0020-revisions-part2-consent-policy': m0020RevisionsPart2,
  '0021-templates': m0021Templates,
  '0022-review-notifications': m0022ReviewNotifications,
  '0024-on-behalf-of': m0024OnBehalfOf,
  '0025-recipient-index': m0025RecipientIndex,
  '0026-breach-workbench': m0026BreachWorkbench,
  '0027-oauth-records': m0027OauthRecords,
  '0028-oauth-granted-by': m0028OauthGrantedBy,
  '0030-audit-pending': m0030AuditPending,
  '0032-search-index': m0032SearchIndex,
  '0038-sealed-binary': m0038SealedBinary,
  '0039-oauth-records-account': m0039OauthRecordsAccount,
  '0040-audit-compact': m0040AuditCompact,
  '0041-search-segments': m0041SearchSegments,
  '0042-audit-compact2': m0042AuditCompact2,
  '0043-webhook-deliveries-waiting-index': m0043WebhookDeliveriesWaitingIndex,
  '0044-oauth-client-orgs': m0044OauthClientOrgs,
  '0045-webhook-range-leases': m0045WebhookRangeLeases,
  '0046-audit-compact3': m0046AuditCompact3,
  '0047-message-submission-event': m0047MessageSubmissionEvent,
  '0048-audit-kinds': m0048AuditKinds,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

// Any 64-bit constant; all Mailward processes agree on it.
const PG_MIGRATION_LOCK = 7_466_115_001;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * SQLite has no advisory locks and Kysely's SQLite migration lock is a no-op,
 * so processes sharing one database file take turns through an exclusive
 * lock file next to it (a lock left by a dead process is taken over).
 */
const withFileLock = async <T>(lockPath: string, fn: () => Promise<T>): Promise<T> => {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      fs.writeFileSync(lockPath, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(fs.readFileSync(lockPath, 'utf8') || '0');
      if (holder && !isAlive(holder)) fs.rmSync(lockPath, { force: true });
      else if (Date.now() > deadline)
        throw new AppError('migration_locked', 503, `Timed out waiting for ${lockPath}.`, { temporary: true });
      else await sleep(25);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockPath, { force: true });
  }
};

/**
 * Brings the schema up to date. Safe when several processes start at once: on
 * PostgreSQL a session advisory lock serialises them (Kysely's own lock table
 * also exists, but creating it can race); on SQLite a lock file does the same.
 */
export const migrateToLatest = async (store: Store): Promise<string[]> => {
  const run = async () => {
    // In name order only: a new migration sorts after every released one (test/migration-order.test.ts).
    const migrator = new Migrator({ db: store.db, provider });
    const { error, results } = await migrator.migrateToLatest();
    if (error) {
      throw new AppError('migration_failed', 500, `Database migration failed: ${String(error)}`, { cause: error });
    }
    return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  };
  if (store.dialect === 'sqlite') return withFileLock(`${store.file}.migrate.lock`, run);
  return store.db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(${PG_MIGRATION_LOCK})`.execute(conn);
    try {
      return await run();
    } finally {
      await sql`select pg_advisory_unlock(${PG_MIGRATION_LOCK})`.execute(conn);
    }
  });
};
