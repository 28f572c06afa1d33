import { badRequest } from './errors.js';

/** An opaque keyset cursor (`next_cursor`): base64url of the last sort key of a page. */
export const encodeCursor = (key: string | number) => Buffer.from(String(key)).toString('base64url');

/**
 * The sort key a cursor names, when it is one a page issued: the decoded key must match `key` and
 * re-encode to the same text. Anything else is 400 `invalid_cursor`, never a silent restart from the
 * first page. One rule for every list (mail, approvals, audit events).
 */
export const decodeCursor = (cursor: string | undefined, key: RegExp): string | undefined => {
  if (cursor === undefined) return undefined;
  const v = Buffer.from(cursor, 'base64url').toString();
  if (!key.test(v) || encodeCursor(v) !== cursor) throw badRequest('invalid_cursor', 'cursor must come from next_cursor.');
  return v;
};

/** A cursor whose key is a sequence number (audit events, domain events). */
export const decodeIntCursor = (c: string | undefined): number | undefined => {
  const v = decodeCursor(c, /^(0|[1-9][0-9]{0,15})$/);
  if (v === undefined) return undefined;
  if (!Number.isSafeInteger(Number(v))) throw badRequest('invalid_cursor', 'cursor must come from next_cursor.');
  return Number(v);
};
