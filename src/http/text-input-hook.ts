import type { FastifyReply, FastifyRequest } from 'fastify';
import { badRequest } from '../kernel/errors.js';
import { assertSafeText, hasValidPercentUtf8 } from '../kernel/text-input.js';
import { sendProblem } from './problem.js';

const INVALID_QUERY = 'The query string must be percent-encoded UTF-8 (RFC 3986 2.5).';

/**
 * One edge check for every /v1 route (preValidation: after parsing, before
 * the zod schemas and any handler): NUL and lone surrogates in the query,
 * path params or JSON body are a 400, never a store error or silently
 * changed text (kernel/text-input.ts). The query's raw escapes are checked
 * too: its parser keeps an escape that is not UTF-8 as literal text.
 */
export const refuseUnsafeText = async (req: FastifyRequest) => {
  const q = req.url.indexOf('?');
  if (q >= 0 && !hasValidPercentUtf8(req.url.slice(q + 1).replace(/\+/g, ' ')))
    throw badRequest('invalid_unicode', INVALID_QUERY, { in: 'query' });
  // Copied: the router and the query parser build objects on prototypes of their own, and only plain objects are walked.
  assertSafeText({ ...(req.params as object) }, 'params');
  assertSafeText({ ...(req.query as object) }, 'query');
  assertSafeText(req.body, 'body');
};

/**
 * Fastify's `frameworkErrors`: a path the router cannot decode (FST_ERR_BAD_URL)
 * is answered as problem+json like every other 400, never with fastify's own
 * body (which echoes the path, and a path can hold an address).
 */
export const frameworkErrors = (err: { code?: string }, req: FastifyRequest, reply: FastifyReply) => {
  if (err.code === 'FST_ERR_BAD_URL') {
    const path = req.url.split('?')[0] ?? '';
    return hasValidPercentUtf8(path)
      ? sendProblem(reply, req, 400, 'bad_url', 'The request path is not a valid URL.')
      : sendProblem(reply, req, 400, 'invalid_unicode', 'The request path must be percent-encoded UTF-8 (RFC 3986 2.5).', { in: 'params' });
  }
  return sendProblem(reply, req, 400, 'bad_request', 'The request could not be processed.');
};
