import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { type RawBuilder, sql } from 'kysely';
import type { AuditService } from '../audit/audit-service.js';
import { systemActor } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { rewrap, SEALED_V2, sealedKeyVersion, sealedVersion } from '../kernel/crypto/envelope.js';
import { createLocalKeyRing, type KeyRing } from '../kernel/crypto/keyring.js';
import type { SealedColumn } from '../kernel/crypto/sealed-columns.js';
import { AppError, isAppError } from '../kernel/errors.js';
import { rekeyRecipientIndex } from '../mail/recipient-index.js';
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
/** Sealed values of one column whose data keys are wrapped under one key-encryption key version. */
export type KeyVersionUse = { version: string; label: string; table: string; column: string; count: number };
export type RotationResult = {
  from: string[];
  to: string;
  rewrapped: number;
  unchanged: number;
  failed: { table: string; id: string; code: string }[];
  retired: string[];
  /** Values still under another version after the last pass (written meanwhile by a server on an old key); their versions are not retired. */
  remaining: KeyVersionUse[];
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
/** Sealed values are fetched in groups of at most this many bytes, so a table of large messages cannot exhaust memory. */
const BATCH_BYTES = 8 * 1024 * 1024;
/** Passes over every column before giving up on values that other servers keep writing under an old version. */
const MAX_PASSES = 3;

/**
 * A v1 envelope (JSON text) starts with these characters: src/kernel/crypto/envelope.ts
 * wrote v, alg and dk first, and the key version is at most 32 characters of
 * [0-9A-Za-z._-]. A v2 envelope (binary) starts with 0x02, flags, the key
 * version's length and the key version. Reading only this prefix lets
 * PostgreSQL fetch a slice of a TOASTed value.
 */
const ENVELOPE_PREFIX = '{"v":1,"alg":"A256GCM","dk":{"kv":"';

/** SQL for the key version of a stored value of either format, null when it is neither. */
const keyVersionSql = (store: Store, c: RawBuilder<unknown>): RawBuilder<unknown> => {
  const n = ENVELOPE_PREFIX.length;
  if (store.dialect === 'postgres') {
    // Every sealed column is bytea since migration 0038; v1 values are their JSON text's UTF-8 bytes.
    const tail = sql`substr(${c}, ${sql.lit(n + 1)}, 33)`;
    const quote = sql`position('\\x22'::bytea in ${tail})`;
    // CASE tests in order, so get_byte never meets a value shorter than 4 bytes; encode(.., 'escape') never fails
    // on bytes that are not UTF-8 (a corrupt value yields a version no ring has, as on SQLite).
    return sql`case
      when length(${c}) < 4 then null
      when get_byte(${c}, 0) = ${sql.lit(SEALED_V2)} then encode(substr(${c}, 4, get_byte(${c}, 2)), 'escape')
      when substr(${c}, 1, ${sql.lit(n)}) = convert_to(${sql.lit(ENVELOPE_PREFIX)}, 'UTF8') and ${quote} > 1 then encode(substr(${tail}, 1, ${quote} - 1), 'escape')
    end`;
  }
  // SQLite: v2 values are BLOBs, v1 values written before migration 0038 are TEXT (a TEXT column keeps a BLOB as it is).
  const tail = sql`substr(${c}, ${sql.lit(n + 1)}, 33)`;
  return sql`case
    when typeof(${c}) = 'blob' and hex(substr(${c}, 1, 1)) = '02' and length(${c}) > 3 then cast(substr(${c}, 4, unicode(cast(substr(${c}, 3, 1) as text))) as text)
    when typeof(${c}) = 'text' and substr(${c}, 1, ${sql.lit(n)}) = ${sql.lit(ENVELOPE_PREFIX)} and instr(${tail}, '"') > 1 then substr(${tail}, 1, instr(${tail}, '"') - 1)
  end`;
};

/**
 * The key versions the sealed values of `columns` are wrapped under, with
 * counts, read from the stored prefix (no decryption). A value in neither
 * envelope format (corrupt) is not counted: it cannot be opened by any key.
 */
export const keyVersionsInUse = async (store: Store, columns: SealedColumn[]): Promise<KeyVersionUse[]> => {
  const out: KeyVersionUse[] = [];
  for (const col of columns) {
    const c = sql.ref(col.sealedColumn);
    const rows = await sql<{
      kv: string | null;
      n: number | string;
    }>`select ${keyVersionSql(store, c)} as kv, count(*) as n from ${sql.table(col.table)} where ${c} is not null group by 1`.execute(
      store.db,
    );
    for (const r of rows.rows) {
      // A corrupt value whose bytes only look like a prefix names no valid version: not counted.
      if (r.kv && /^[0-9A-Za-z._-]{1,32}$/.test(r.kv))
        out.push({ version: r.kv, label: col.label, table: col.table, column: col.sealedColumn, count: Number(r.n) });
    }
  }
  return out;
};

/**
 * Refuses a key ring that cannot open every sealed value (start-up, before
 * anything reads data): a version may be dropped from the ring only once no
 * value is wrapped under it. Every ring registers its versions in `key_ring`
 * before it writes (createContainer, rotateKeys), so a ring holding every
 * registered version opens every value and the scan is skipped; otherwise the
 * sealed columns are scanned. Throws 500 master_key_incomplete naming the
 * missing versions and where they are still used (labels and counts only).
 */
export const assertRingOpensStore = async (store: Store, ring: KeyRing, columns: SealedColumn[]) => {
  const have = new Set(ring.versions());
  const known = await store.db.selectFrom('key_ring').select('version').execute();
  if (known.every((k) => have.has(k.version))) return;
  const lacking = (await keyVersionsInUse(store, columns)).filter((u) => !have.has(u.version));
  if (lacking.length === 0) return;
  const versions = [...new Set(lacking.map((u) => u.version))].sort();
  const where = lacking.map((u) => `${u.label}: ${u.count} under version ${u.version}`).join(', ');
  throw new AppError(
    'master_key_incomplete',
    500,
    `Refusing to start: sealed values are wrapped under key-encryption key version(s) ${versions.join(', ')}, which the configured master key does not include (${where}). ` +
      `Put version(s) ${versions.join(', ')} back into the key file or MAILWARD_MASTER_KEYS and run \`mailward keys rotate\`; drop a version only after it reports it retired.`,
    { extra: { versions } },
  );
};

/**
 * Key rotation:
 * 1. a new key-encryption key version is added and made active: appended to
 *    <data dir>/master.key (atomic rewrite, 0600), or, for keys given in the
 *    environment, taken from MAILWARD_MASTER_KEYS whose `active` the operator
 *    set to the new version;
 * 2. its fingerprint is registered in `key_ring`;
 * 3. every value of every sealed column (SEALED_COLUMNS, src/app/sealed-columns.ts)
 *    is re-wrapped under it (and a v1 JSON value rewritten in the v2 binary form), in batches bounded in rows and bytes, with
 *    compare-and-set updates (a value rewritten meanwhile is left alone);
 * 4. the sealed columns are scanned for values still under another version
 *    (written meanwhile by a server that had not yet reloaded the key); if
 *    any, another pass runs, up to MAX_PASSES;
 * 5. if nothing failed, every other version that no value uses any more is
 *    marked retired in `key_ring`: only then may the operator drop it (the
 *    file keeps it until then, so servers that have not yet reloaded stay
 *    readable; start-up refuses a ring lacking a version still in use).
 * Running servers follow the key file within a second (master-key.ts), so reads
 * keep working during and after. Throws 409 master_key_from_env when the only
 * key is MAILWARD_MASTER_KEY (Mailward cannot rewrite the environment).
 * Audits key_ring.rotated (outcome error if any value failed or remains under an old version).
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
      throw new AppError(
        'kek_retired',
        409,
        `Key version ${ring.activeVersion} was retired; give MAILWARD_MASTER_KEYS a new version as active.`,
      );
    }
  }
  await registerKeyRing(store, ring, clock);

  const result: RotationResult = { from, to: ring.activeVersion, rewrapped: 0, unchanged: 0, failed: [], retired: [], remaining: [] };
  const failedIds = new Set<string>();
  const sizeOf = (c: string) => (store.dialect === 'postgres' ? sql`pg_column_size(${sql.ref(c)})` : sql`length(${sql.ref(c)})`);
  const rewrapColumn = async (col: SealedColumn, firstPass: boolean) => {
    const table = sql.table(col.table);
    const idRef = sql.ref(col.idColumn);
    const sealedRef = sql.ref(col.sealedColumn);
    const countRow = await sql<{ n: number }>`select count(*) as n from ${table} where ${sealedRef} is not null`.execute(store.db);
    const total = Number(countRow.rows[0]?.n ?? 0);
    let done = 0;
    let after: string | null = null;
    onProgress?.({ label: col.label, done, total });
    const meta = sql.join([col.idColumn, ...col.columns].map((c) => sql.ref(c)));
    for (;;) {
      const resume: RawBuilder<unknown> = after === null ? sql`` : sql`and ${idRef} > ${after}`;
      const page: { rows: Record<string, unknown>[] } = await sql<
        Record<string, unknown>
      >`select ${meta}, ${sizeOf(col.sealedColumn)} as sealed_len from ${table}
        where ${sealedRef} is not null ${resume} order by ${idRef} limit ${batchSize}`.execute(store.db);
      if (page.rows.length === 0) break;
      for (let i = 0; i < page.rows.length; ) {
        const group: Record<string, unknown>[] = [];
        let bytes = 0;
        while (i < page.rows.length && (group.length === 0 || bytes + Number(page.rows[i]!.sealed_len) <= BATCH_BYTES)) {
          bytes += Number(page.rows[i]!.sealed_len);
          group.push(page.rows[i++]!);
        }
        const ids = group.map((r) => String(r[col.idColumn]));
        const stored = new Map(
          (
            await sql<Record<string, unknown>>`select ${idRef}, ${sealedRef} from ${table} where ${idRef} in (${sql.join(ids)})`.execute(
              store.db,
            )
          ).rows.map((r) => [String(r[col.idColumn]), r[col.sealedColumn]]),
        );
        await store.db.transaction().execute(async (tx) => {
          for (const row of group) {
            const id = String(row[col.idColumn]);
            const value = stored.get(id);
            // Deleted, or its sealed value cleared, since the page was read.
            if (typeof value !== 'string' && !Buffer.isBuffer(value)) continue;
            try {
              // A v1 (JSON text) value under the active key is still rewritten: rotation moves old values to the binary form.
              if (sealedKeyVersion(value) === ring.activeVersion && sealedVersion(value) === 2) {
                // Counted once: later passes meet the values earlier ones re-wrapped.
                if (firstPass) result.unchanged++;
                continue;
              }
              const next = rewrap(ring, value, col.aad(row));
              await sql`update ${table} set ${sealedRef} = ${next} where ${idRef} = ${id} and ${sealedRef} = ${value}`.execute(tx);
              result.rewrapped++;
            } catch (e) {
              const key = `${col.table}|${col.sealedColumn}|${id}`;
              if (!failedIds.has(key)) {
                failedIds.add(key);
                result.failed.push({ table: col.table, id, code: isAppError(e) ? e.code : 'error' });
              }
            }
          }
        });
      }
      after = String(page.rows.at(-1)![col.idColumn]);
      done += page.rows.length;
      onProgress?.({ label: col.label, done, total: Math.max(total, done) });
    }
  };

  let pending = columns;
  for (let pass = 1; pass <= MAX_PASSES && pending.length > 0; pass++) {
    for (const col of pending) await rewrapColumn(col, pass === 1);
    // Values a failed re-wrap left behind stay under their version: no further pass helps them.
    result.remaining = (await keyVersionsInUse(store, columns)).filter((u) => u.version !== ring.activeVersion);
    if (result.failed.length > 0) break;
    pending = columns.filter((c) => result.remaining.some((u) => u.table === c.table && u.column === c.sealedColumn));
  }

  // The recipient index gets a new HMAC key and is recomputed; its kept keys are re-wrapped before any KEK retires.
  let index: Awaited<ReturnType<typeof rekeyRecipientIndex>> | null = null;
  if (result.failed.length === 0) {
    try {
      index = await rekeyRecipientIndex(store, ring, clock.now().toISOString());
    } catch (e) {
      result.failed.push({ table: 'recipient_index', id: '*', code: isAppError(e) ? e.code : 'error' });
    }
  }
  if (result.failed.length === 0) {
    const at = clock.now().toISOString();
    const inUse = new Set(result.remaining.map((u) => u.version));
    const toRetire = known.filter((k) => k.version !== ring.activeVersion && !k.retired_at && !inUse.has(k.version)).map((k) => k.version);
    for (const v of toRetire) await store.db.updateTable('key_ring').set({ retired_at: at }).where('version', '=', v).execute();
    result.retired = toRetire;
  }
  await audit.recordAlone({
    action: 'key_ring.rotated',
    actor: systemActor(),
    target: { type: 'key_ring', id: ring.activeVersion },
    outcome: result.failed.length === 0 && result.remaining.length === 0 ? 'success' : 'error',
    details: {
      from: result.from,
      to: result.to,
      rewrapped: result.rewrapped,
      unchanged: result.unchanged,
      failed: result.failed.slice(0, 100),
      retired: result.retired,
      remaining: result.remaining.map((u) => ({ version: u.version, label: u.label, count: u.count })),
      recipient_index: index,
    },
  });
  return result;
};
