import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { canonicalOfRow, type EventRow, GENESIS_HASH } from '../../src/audit/audit-chain.js';
import { type EventKind, ID_COLUMNS, idOfStored, KIND_COLUMNS, STORED_EVENT_TABLE } from '../../src/audit/audit-columns.js';
import { eventRows, selectEventRows } from '../../src/audit/event-rows.js';
import type { Db, Store } from '../../src/store/db.js';
import { migrateToLatest } from '../../src/store/migrate.js';

type IdColumn = (typeof ID_COLUMNS)[number];
export type TextIds<T> = { [K in keyof T]: K extends IdColumn ? (null extends T[K] ? string | null : string) : T[K] };

/**
 * Rows read straight from `audit_events` with their id columns as text (they are stored as id bytes, migration
 * 0042): for tests that look at the stored rows rather than through the audit service.
 */
export const textIds = <T extends object>(rows: T[]): TextIds<T>[] =>
  rows.map((r) => {
    const o = { ...r } as Record<string, unknown>;
    for (const k of ID_COLUMNS) if (k in o) o[k] = idOfStored(o[k]);
    return o as TextIds<T>;
  });
export const textIdsOf = <T extends object>(row: T): TextIds<T> => textIds([row])[0]!;

/**
 * `n` audit events chained as the integrator chains them (each `hash` over the previous one and `canonicalOfRow`), with
 * the fields `row(i)` gives event `i` (1-based): the audit migration tests write them in an older layout.
 */
export const chainedRows = (n: number, row: (i: number) => Omit<EventRow, 'prev_hash' | 'hash'>): EventRow[] => {
  const out: EventRow[] = [];
  let prev = GENESIS_HASH;
  for (let i = 1; i <= n; i++) {
    const r: EventRow = { ...row(i), prev_hash: prev, hash: '' };
    r.hash = createHash('sha256').update(prev, 'hex').update(canonicalOfRow(r), 'utf8').digest('hex');
    prev = r.hash;
    out.push(r);
  }
  return out;
};

/**
 * Points the chain head at the last of `before` (written by the test in an older layout through `old`), runs every
 * later migration, and returns the events as the audit service reads them, in order.
 */
export const migrateWithHead = async (store: Store, old: Kysely<any>, before: readonly EventRow[]): Promise<EventRow[]> => {
  await old
    .updateTable('audit_head')
    .set({ seq: before.length, hash: before.at(-1)!.hash })
    .where('id', '=', 1)
    .execute();
  await migrateToLatest(store);
  return eventRows(selectEventRows(store.db).orderBy('e.seq'));
};

/**
 * The stored audit events (migration 0048): a tamperer with database access writes here, since `audit_events` is a
 * read-only view of it.
 */
export const EVENT_ROWS = STORED_EVENT_TABLE;

/**
 * A tamperer's change to one event's action, actor type, target type, outcome or at_text, which are stored once per
 * kind in `audit_kinds` (migration 0048): a new kind row with the change, and the event pointed at it (kinds are
 * append-only; inserting one needs no trigger dropped, repointing the event does). Returns the event's kind id
 * before, to put it back with `setKindIdOf`.
 */
export const setKindOf = async (db: Db, seq: number, change: Partial<EventKind>): Promise<number> => {
  const row = await db
    .selectFrom('audit_events')
    .select(['kind_id', ...KIND_COLUMNS])
    .where('seq', '=', seq)
    .executeTakeFirstOrThrow();
  const top = await db.selectFrom('audit_kinds').select(sql<number>`max(id)`.as('m')).executeTakeFirstOrThrow();
  const id = Number(top.m) + 1;
  const { kind_id, ...kind } = row;
  await db
    .insertInto('audit_kinds')
    .values({ id, ...kind, ...change } as never)
    .execute();
  await setKindIdOf(db, seq, id);
  return Number(kind_id);
};
export const setKindIdOf = async (db: Db, seq: number, kindId: number) => {
  await db.updateTable(EVENT_ROWS).set({ kind_id: kindId }).where('seq', '=', seq).execute();
};
