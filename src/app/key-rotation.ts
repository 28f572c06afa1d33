import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { type RawBuilder, sql } from 'kysely';
import type { AuditService } from '../audit/audit-service.js';
import { systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { parseSealed, rewrap } from '../kernel/crypto/envelope.js';
import { createLocalKeyRing, type KeyRing } from '../kernel/crypto/keyring.js';
import type { SealedColumn } from '../kernel/crypto/sealed-columns.js';
import { AppError, isAppError } from '../kernel/errors.js';
import type { Store } from '../store/db.js';
import {
  checkKeyRing,
  type KeySourceOptions,
  keySourceKind,
  loadKeyRing,
  masterKeyPath,
  parseKeySet,
  registerKeyRing,
  replaceSecretFile,
  serializeKeySet,
} from './master-key.js';

export type RotationProgress = { label: string; done: number; total: number };
export type RotationResult = {
  from: string[];
  to: string;
  rewrapped: number;
  unchanged: number;
  failed: { table: string; id: string; code: string }[];
  retired: string[];
};

type Deps = {
  store: Store;
  keys: KeySourceOptions;
  clock: Clock;
  audit: Pick<AuditService, 'recordAlone'>;
  columns: SealedColumn[];
  onProgress?: (p: RotationProgress) => void;
  batchSize?: number;
};

const BATCH = 200;

/**
 * Key rotation (issue 5):
 * 1. a new key-encryption key version is added and made active: appended to
 *    <data dir>/master.key (atomic rewrite, 0600), or, for keys given in the
 *    environment, taken from MAILWARD_MASTER_KEYS whose `active` the operator
 *    set to the new version;
 * 2. its fingerprint is registered in `key_ring`;
 * 3. every value of every sealed column is re-wrapped under it, in batches,
 *    with compare-and-set updates (a value rewritten meanwhile is left alone);
 * 4. if nothing failed, every other version is marked retired in `key_ring`
 *    (start-up then no longer needs it; the file keeps it until the operator
 *    drops it, so servers that have not yet reloaded stay readable).
 * Running servers follow the key file within a second (master-key.ts), so reads
 * keep working during and after. Throws 409 master_key_from_env when the only
 * key is MAILWARD_MASTER_KEY (Mailward cannot rewrite the environment).
 * Audits key_ring.rotated (outcome error if any value failed).
 */
export const rotateKeys = async ({ store, keys, clock, audit, columns, onProgress, batchSize = BATCH }: Deps): Promise<RotationResult> => {
  const kind = keySourceKind(keys);
  if (kind === 'env') {
    throw new AppError(
      'master_key_from_env',
      409,
      'The master key comes from MAILWARD_MASTER_KEY, which Mailward cannot rewrite. To rotate: generate a new key (openssl rand -base64 32), ' +
        'replace MAILWARD_MASTER_KEY with MAILWARD_MASTER_KEYS=\'{"active":"2","keys":{"1":"<current key>","2":"<new key>"}}\' and run `mailward keys rotate` again; ' +
        'it re-wraps every value under version 2 and retires version 1, which you may then drop from MAILWARD_MASTER_KEYS.',
    );
  }
  const current = loadKeyRing({ ...keys, create: false });
  if (!(await checkKeyRing(store, current))) {
    throw new AppError('store_not_initialised', 409, 'The store has no key ring yet: run `mailward init` first.');
  }
  const known = await store.db.selectFrom('key_ring').select(['version', 'retired_at']).execute();
  const from = [...new Set([...current.versions(), ...known.map((k) => k.version)])].sort();

  let ring: KeyRing;
  if (kind === 'file') {
    const file = masterKeyPath(keys.dataDir);
    const set = parseKeySet(fs.readFileSync(file, 'utf8'), file);
    const next = String(Math.max(0, ...from.map((v) => Number.parseInt(v, 10)).filter(Number.isFinite)) + 1);
    const entries = [...set.entries, { version: next, key: randomBytes(32) }];
    replaceSecretFile(file, serializeKeySet({ entries, active: next }));
    ring = createLocalKeyRing(entries, next);
  } else {
    ring = current;
    if (known.some((k) => k.version === ring.activeVersion && k.retired_at)) {
      throw new AppError('kek_retired', 409, `Key version ${ring.activeVersion} was retired; give MAILWARD_MASTER_KEYS a new version as active.`);
    }
  }
  await registerKeyRing(store, ring, clock);

  const result: RotationResult = { from, to: ring.activeVersion, rewrapped: 0, unchanged: 0, failed: [], retired: [] };
  for (const col of columns) {
    const countRow = await sql<{ n: number }>`select count(*) as n from ${sql.table(col.table)}`.execute(store.db);
    const total = Number(countRow.rows[0]?.n ?? 0);
    let done = 0;
    let after: string | null = null;
    onProgress?.({ label: col.label, done, total });
    for (;;) {
      const cols = sql.join([col.idColumn, col.sealedColumn, ...col.columns].map((c) => sql.ref(c)));
      const where: RawBuilder<unknown> = after === null ? sql`` : sql`where ${sql.ref(col.idColumn)} > ${after}`;
      const batch: { rows: Record<string, unknown>[] } = await sql<Record<string, unknown>>`select ${cols} from ${sql.table(col.table)} ${where} order by ${sql.ref(col.idColumn)} limit ${batchSize}`.execute(store.db);
      if (batch.rows.length === 0) break;
      await store.db.transaction().execute(async (tx) => {
        for (const row of batch.rows) {
          const id = String(row[col.idColumn]);
          const stored = String(row[col.sealedColumn]);
          try {
            if (parseSealed(stored).dk.kv === ring.activeVersion) {
              result.unchanged++;
              continue;
            }
            const next = rewrap(ring, stored, col.aad(row));
            await sql`update ${sql.table(col.table)} set ${sql.ref(col.sealedColumn)} = ${next}
                      where ${sql.ref(col.idColumn)} = ${id} and ${sql.ref(col.sealedColumn)} = ${stored}`.execute(tx);
            result.rewrapped++;
          } catch (e) {
            result.failed.push({ table: col.table, id, code: isAppError(e) ? e.code : 'error' });
          }
        }
      });
      after = String(batch.rows.at(-1)![col.idColumn]);
      done += batch.rows.length;
      onProgress?.({ label: col.label, done, total: Math.max(total, done) });
    }
  }

  if (result.failed.length === 0) {
    const at = clock.now().toISOString();
    const toRetire = known.filter((k) => k.version !== ring.activeVersion && !k.retired_at).map((k) => k.version);
    for (const v of toRetire) await store.db.updateTable('key_ring').set({ retired_at: at }).where('version', '=', v).execute();
    result.retired = toRetire;
  }
  await audit.recordAlone({
    action: 'key_ring.rotated',
    actor: systemActor(),
    target: { type: 'key_ring', id: ring.activeVersion },
    outcome: result.failed.length === 0 ? 'success' : 'error',
    details: {
      from: result.from,
      to: result.to,
      rewrapped: result.rewrapped,
      unchanged: result.unchanged,
      failed: result.failed.slice(0, 100),
      retired: result.retired,
    },
  });
  return result;
};
