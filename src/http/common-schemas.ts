import { z } from 'zod';
import { encodeCursor } from '../kernel/cursor.js';
import { intQuery } from '../kernel/query-int.js';
import { errorCodesFor } from '../kernel/errors.js';
import { problemSchemaFor } from './problem.js';

/** One declared error answer: application/problem+json (RFC 9457), its possible codes named in the description. */
export const problemResponse = (status: number) => {
  const codes = errorCodesFor(status);
  return {
    description: codes.length ? `Problem details; \`code\` is one of ${codes.map((c) => `\`${c}\``).join(', ')}` : 'Problem details',
    content: { 'application/problem+json': { schema: problemSchemaFor(status) } },
  };
};

/** OpenAPI: the problem+json answers a route can give. */
export const problems = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, problemResponse(s)])) as Record<number, ReturnType<typeof problemResponse>>;

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
/** OpenAPI: a route that needs no key (Redocly security-defined: public routes say so explicitly). */
export const publicRoute: { [name: string]: string[] }[] = [];
