import { type CompiledQuery, PostgresAdapter } from 'kysely';
import { type Executor, runCompiled } from './db.js';
import type { Database } from './schema.js';

/** Row counts one multi-row INSERT is compiled for; a batch is cut into the largest that fit (500 rows: 6 statements). */
const INSERT_SIZES = [128, 64, 32, 16, 8, 4, 2, 1] as const;

/**
 * A multi-row INSERT into `table` built and compiled by Kysely once per row count in INSERT_SIZES, then
 * executed with each batch's values (same SQL on SQLite and PostgreSQL). Building a Kysely insert of a
 * few hundred rows parses every value into an operation node and compiles the lot, which costs more than
 * the insert itself; a fixed set of SQL texts also keeps the SQLite statement cache hitting. 128 rows of
 * 16 columns bind 2048 values, far below SQLite's 32766 and PostgreSQL's 65535. Compiled on first use
 * with the executor's own dialect (kept apart per dialect: a process may hold stores of both).
 */
export const batchInsert = <T extends keyof Database & string>(table: T, columns: readonly (keyof Database[T] & string)[]) => {
  const compiled = new Map<string, CompiledQuery<unknown>>();
  const statement = (ex: Executor, n: number): CompiledQuery<unknown> => {
    const key = `${ex.getExecutor().adapter instanceof PostgresAdapter ? 'pg' : 'sqlite'}:${n}`;
    let s = compiled.get(key);
    if (!s) {
      // As compileOnce (src/store/db.ts) with markers found through a map: its indexOf per parameter is
      // quadratic, some 70 ms for the 2048 values of the largest statement here.
      const markers = Array.from({ length: n * columns.length }, (_, i) => `\u0000mailward-row-value-${i}`);
      const rows = Array.from({ length: n }, (_, r) => Object.fromEntries(columns.map((c, i) => [c, markers[r * columns.length + i]])));
      s = ex
        .insertInto(table)
        .values(rows as never)
        .compile();
      const at = new Map(markers.map((m, i) => [m, i]));
      const slots = s.parameters.map((p) => at.get(p as string) ?? -1);
      if (slots.length !== markers.length || slots.some((x, j) => x !== j)) {
        throw new Error(`batchInsert: the values of ${table} did not compile to one parameter each, in order`);
      }
      compiled.set(key, s);
    }
    return s;
  };
  return async (ex: Executor, rows: readonly Database[T][]): Promise<void> => {
    let i = 0;
    while (i < rows.length) {
      const n = INSERT_SIZES.find((s) => s <= rows.length - i)!;
      const values: unknown[] = [];
      for (let r = i; r < i + n; r++) {
        const row = rows[r] as Record<string, unknown>;
        for (const c of columns) values.push(row[c]);
      }
      await runCompiled(ex, { ...statement(ex, n), parameters: values });
      i += n;
    }
  };
};

/**
 * The values of an `IN (...)` list padded to the next power of two by repeating the last (same rows
 * matched), so a list of any length is one of a few SQL texts: on SQLite each is prepared once and then
 * taken from the statement cache (src/store/db.ts), where a list of every length would prepare anew.
 */
export const paddedIn = <V>(values: readonly V[]): V[] => {
  if (values.length <= 1) return [...values];
  let n = 1;
  while (n < values.length) n *= 2;
  const out = [...values];
  while (out.length < n) out.push(values.at(-1)!);
  return out;
};
