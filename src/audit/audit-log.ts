import type { Clock } from '../kernel/clock.js';
import type { Db, Dialect } from '../store/db.js';
import { createAuditExporter } from './audit-export.js';
import type { AuditService } from './audit-service.js';
import { type ExternalCheckpoints, verifyStore } from './audit-verify.js';
import { createCheckpointPublisher } from './checkpoint-publisher.js';
import { type AuditKeys, createCheckpointService } from './checkpoint-service.js';
import { createRetentionService } from './retention.js';
import { createTreeStore } from './tree-store.js';
import type { VerifySource } from './verify-worker.js';
import { createWitnessClient, type Witness } from './witness-client.js';
import { createReceiptService } from './receipts.js';
import type { Logger } from '../kernel/log.js';

type Deps = {
  db: Db;
  dialect: Dialect;
  clock: Clock;
  audit: Pick<AuditService, 'record' | 'recordAlone' | 'sync'> & Partial<Pick<AuditService, 'onIntegrated'>>;
  /** The installation's audit-ed25519 key (identity/signing-keys.ts); audit imports no domain. */
  keys: AuditKeys;
  retentionDays: number;
  /** Where each signed checkpoint is published outside the database (null: nowhere). */
  checkpointDir?: string | null;
  /** Lets `verify` read with worker threads (2^16 events each), for large logs. */
  verifySource?: VerifySource;
  /** Transparency-log witnesses each new checkpoint is submitted to (MAILWARD_WITNESSES). */
  witnesses?: Witness[];
  logger?: Logger;
};

/** Everything on top of the hash chain: Merkle tree, signed checkpoints, verification, export, retention. */
export const createAuditLog = ({
  db,
  dialect,
  clock,
  audit,
  keys,
  retentionDays,
  checkpointDir,
  verifySource,
  witnesses,
  logger,
}: Deps) => {
  const tree = createTreeStore({ db, dialect });
  // The tree's catch-up takes the chain hashes this process's integrator committed from memory (tree-store.ts).
  audit.onIntegrated?.(tree.noteIntegrated);
  const publisher = checkpointDir ? createCheckpointPublisher({ db, dir: checkpointDir }) : null;
  const witnessClient = witnesses && witnesses.length > 0 ? createWitnessClient({ db, tree, clock, witnesses, logger }) : null;
  const checkpoints = createCheckpointService({ db, tree, clock, sync: audit.sync, keys, publisher, witnesses: witnessClient });
  const receipts = createReceiptService({ db, tree, checkpoints, sync: audit.sync });
  /**
   * Full verification of the store; never throws for tampering (see the report).
   * Checks it against the published checkpoint directory unless `external.dir` says otherwise.
   */
  const verify = async (
    onProgress?: (done: number, total: number) => void,
    opts: { parallelFrom?: number; chunkSize?: number; external?: ExternalCheckpoints } = {},
  ) => {
    // Everything committed before the call is verified: wait for its integration first.
    await audit.sync();
    return verifyStore({
      db,
      keyByKid: keys.byKid,
      allKeys: keys.all,
      onProgress,
      source: verifySource,
      parallelFrom: opts.parallelFrom,
      chunkSize: opts.chunkSize,
      external: { dir: checkpointDir ?? null, ...opts.external },
      now: clock.now(),
    });
  };
  const exporter = createAuditExporter({ db, tree, checkpoints, sync: audit.sync });
  const retention = createRetentionService({ db, clock, audit, tree, checkpoints, verify: () => verify(), retentionDays });
  return { tree, checkpoints, receipts, verify, exporter, retention };
};

export type AuditLog = ReturnType<typeof createAuditLog>;
