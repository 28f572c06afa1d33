import { z } from 'zod';
import { encodeCursor } from '../kernel/cursor.js';
import { intQuery } from '../kernel/query-int.js';
import { problemSchema } from './problem.js';

/** OpenAPI: the problem+json answers a route can give. */
export const problems = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, problemSchema.describe('application/problem+json')])) as Record<number, typeof problemSchema>;

export const idParams = (prefix: string) =>
  z.strictObject({ id: z.string().regex(new RegExp(`^${prefix}_[0-9a-f]{32}$`), `must be a ${prefix}_ id`) });

export { encodeCursor };

/** A cursor over an integer key (audit seq); 400 invalid_cursor for anything a page did not issue. */
export { decodeIntCursor } from '../kernel/cursor.js';

export { intQuery };
export const cursorQuery = z.string().regex(/^[A-Za-z0-9_-]{1,200}$/, 'must be a cursor from next_cursor');
export const limitQuery = intQuery(1, 500).default(100);
export const isoQuery = z.iso.datetime({ offset: true });
export const secured = [{ bearerAuth: [] }];
