import { AppError } from '../kernel/errors.js';

/*
 * Reading a JSON column into a typed value, checked: a repo maps each JSON column of its table once (STYLE.md,
 * one repo per table) and a value of the wrong shape fails closed with 500 `internal` naming the table and
 * column, never the value (it may hold PHI facts). The checks are structural and hand-written rather than zod
 * schemas because they run on every row of list and scan pages, and only need to prove the shape the readers
 * rely on (arrays of strings, objects with a string `code`, ...).
 */

const malformed = (where: string) => new AppError('internal', 500, `A stored ${where} value is malformed.`);

const parse = (s: string, where: string): unknown => {
  try {
    return JSON.parse(s);
  } catch {
    throw malformed(where);
  }
};

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A JSON column holding an array of strings; null (never written) reads as []. */
export const stringList = (s: string | null, where: string): string[] => {
  if (s === null) return [];
  const v = parse(s, where);
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw malformed(where);
  return v;
};

/** A JSON column holding an array of objects; each passes `check`. null reads as []. */
export const objectList = <T>(s: string | null, where: string, check: (x: Record<string, unknown>) => boolean = () => true): T[] => {
  if (s === null) return [];
  const v = parse(s, where);
  if (!Array.isArray(v) || !v.every((x) => isObject(x) && check(x))) throw malformed(where);
  return v as T[];
};

/** A JSON column holding one object (or null); it passes `check`. */
export const objectOrNull = <T>(s: string | null, where: string, check: (x: Record<string, unknown>) => boolean = () => true): T | null => {
  if (s === null) return null;
  const v = parse(s, where);
  if (v === null) return null;
  if (!isObject(v) || !check(v)) throw malformed(where);
  return v as T;
};

/** Maps the JSON columns present in `row` with `mappers`; other columns are copied as they are. */
export const mapColumns = <R extends object>(row: R, mappers: Record<string, (s: string | null) => unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...(row as Record<string, unknown>) };
  for (const k in mappers) if (k in out) out[k] = mappers[k]!(out[k] as string | null);
  return out;
};
