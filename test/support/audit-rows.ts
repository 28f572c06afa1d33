import { ID_COLUMNS, idOfStored } from '../../src/audit/audit-columns.js';

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
