import { z } from 'zod';
import { problemSchema } from './problem.js';

/** OpenAPI: the problem+json answers a route can give. */
export const problems = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, problemSchema.describe('application/problem+json')])) as Record<
    number,
    typeof problemSchema
  >;

export const idParams = (prefix: string) =>
  z.strictObject({ id: z.string().regex(new RegExp(`^${prefix}_[0-9a-f]{32}$`), `must be a ${prefix}_ id`) });

/** Opaque keyset cursor: base64url of the last seen sort key. */
export const encodeCursor = (v: string | number) => Buffer.from(String(v)).toString('base64url');
export const decodeCursor = (c: string | undefined): string | undefined =>
  c === undefined ? undefined : Buffer.from(c, 'base64url').toString();

export const cursorQuery = z.string().regex(/^[A-Za-z0-9_-]{1,200}$/, 'must be a cursor from next_cursor');
export const limitQuery = z.coerce.number().int().min(1).max(500).default(100);
export const isoQuery = z.iso.datetime({ offset: true });
export const secured = [{ bearerAuth: [] }];
