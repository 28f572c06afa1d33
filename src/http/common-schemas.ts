import { z } from 'zod';
import { badRequest } from '../kernel/errors.js';
import { intQuery } from '../kernel/query-int.js';
import { problemSchema } from './problem.js';

/** OpenAPI: the problem+json answers a route can give. */
export const problems = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, problemSchema.describe('application/problem+json')])) as Record<number, typeof problemSchema>;

export const idParams = (prefix: string) =>
  z.strictObject({ id: z.string().regex(new RegExp(`^${prefix}_[0-9a-f]{32}$`), `must be a ${prefix}_ id`) });

/** Opaque keyset cursor: base64url of the last seen sort key. */
export const encodeCursor = (v: string | number) => Buffer.from(String(v)).toString('base64url');
export const decodeCursor = (c: string | undefined): string | undefined =>
  c === undefined ? undefined : Buffer.from(c, 'base64url').toString();

/**
 * A cursor over an integer key (audit seq): only what encodeCursor gave is
 * accepted; anything else is 400 invalid_cursor, never a silent restart from
 * the first page.
 */
export const decodeIntCursor = (c: string | undefined): number | undefined => {
  if (c === undefined) return undefined;
  const v = decodeCursor(c) ?? '';
  if (!/^(0|[1-9][0-9]{0,15})$/.test(v) || !Number.isSafeInteger(Number(v)) || encodeCursor(v) !== c) {
    throw badRequest('invalid_cursor', 'cursor must come from next_cursor.');
  }
  return Number(v);
};

export { intQuery };
export const cursorQuery = z.string().regex(/^[A-Za-z0-9_-]{1,200}$/, 'must be a cursor from next_cursor');
export const limitQuery = intQuery(1, 500).default(100);
export const isoQuery = z.iso.datetime({ offset: true });
export const secured = [{ bearerAuth: [] }];
