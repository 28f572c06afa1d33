import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ERROR_CODES, isAppError } from '../kernel/errors.js';
import { isStoreBusy, isStoreUnavailable } from '../store/db.js';
import { openApi } from './openapi-registry.js';

const problemFields = {
  type: z.string().describe('urn:mailward:problem:<code>'),
  title: z.string(),
  status: z.number().int(),
  code: z.string().describe('stable snake_case error code; switch on this'),
  detail: z.string().describe('what to fix; never PHI, addresses or secrets'),
  request_id: z.string().nullable(),
  temporary: z.boolean().optional().describe('true when retrying later can help'),
  retry_after: z.number().int().optional().describe('seconds to wait before retrying (429, 503)'),
};

/** RFC 9457 problem details, as every error of the API is answered (application/problem+json). */
export const problemSchema = z
  .looseObject(problemFields)
  .meta({ description: 'RFC 9457 problem details' })
  .register(openApi, { id: 'Problem' });

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

const problemsByStatus = new Map<number, z.ZodType>();

/**
 * The problem schema of one HTTP status, registered as a named component (`NotFoundProblem`...) whose
 * `code` lists the catalogued codes of that status (kernel/errors.ts ERROR_CODES). The list is documentation:
 * the serializer accepts any string, so a code missing from the catalogue is caught by its test, not by a 500.
 */
export const problemSchemaFor = (status: number): z.ZodType => {
  const known = problemsByStatus.get(status);
  if (known) return known;
  const title = TITLES[status] ?? 'Error';
  const entries = ERROR_CODES.filter((e) => e.status === status);
  const codes = [...new Set(entries.map((e) => e.code))];
  const schema = z
    .looseObject({
      ...problemFields,
      status: z.literal(status),
      code: z.string().meta(codes.length ? { enum: codes, description: 'stable snake_case error code' } : {}),
    })
    .meta({
      description: [`${status} ${title} (RFC 9457 problem details). Codes:`, ...entries.map((e) => `- \`${e.code}\`: ${e.summary}`)].join(
        '\n',
      ),
    })
    .register(openApi, { id: `${title.replace(/[^A-Za-z]/g, '')}Problem` });
  problemsByStatus.set(status, schema);
  return schema;
};

export const sendProblem = (
  reply: FastifyReply,
  req: FastifyRequest,
  status: number,
  code: string,
  detail: string,
  extra: Record<string, unknown> = {},
) =>
  reply
    .code(status)
    .type('application/problem+json')
    .send({
      type: `urn:mailward:problem:${code}`,
      title: TITLES[status] ?? 'Error',
      status,
      code,
      detail,
      request_id: req.id ?? null,
      ...extra,
    });

/** Fastify's own client errors, by code, with stable Mailward codes. */
const FASTIFY_CODES: Record<string, [number, string, string]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'malformed_json', 'The request body is not valid JSON.'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'malformed_json', 'The request body is empty but its content type is JSON.'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'payload_too_large', 'The request body is larger than this route accepts.'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type', 'This route does not accept that content type.'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'bad_content_length', 'Content-Length does not match the body.'],
  FST_ERR_CTP_INVALID_TYPE: [400, 'bad_request', 'The content type header is invalid.'],
  FST_ERR_VALIDATION: [400, 'validation_failed', 'The request does not match the schema.'],
};

/**
 * One place maps every error to application/problem+json. 5xx never says why
 * (the log has the error class and request id, never PHI); 4xx says what to fix.
 */
export const errorHandler = (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
  if (isAppError(err)) {
    if (err.status >= 500) req.log.error({ reqId: req.id, code: err.code, err: { type: err.name, message: err.detail } }, 'request failed');
    if ((err.status === 429 || err.status === 503) && err.extra?.retry_after) reply.header('retry-after', String(err.extra.retry_after));
    return sendProblem(reply, req, err.status, err.code, err.detail, {
      ...(err.temporary ? { temporary: true } : {}),
      ...(err.extra ?? {}),
    });
  }
  if (hasZodFastifySchemaValidationErrors(err)) {
    const errors = err.validation.map((v) => ({
      in: err.validationContext ?? 'body',
      path: v.instancePath || '/',
      message: v.message ?? 'invalid',
    }));
    return sendProblem(
      reply,
      req,
      400,
      'validation_failed',
      `The request ${err.validationContext ?? 'body'} is invalid: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`.slice(0, 1000),
      { errors },
    );
  }
  if (isResponseSerializationError(err)) {
    req.log.error({ reqId: req.id, err: { type: 'ResponseSerializationError' } }, 'response did not match its schema');
    return sendProblem(reply, req, 500, 'internal', 'An internal error occurred.');
  }
  if (isStoreBusy(err)) {
    // Another process held the SQLite writer past busy_timeout: the transaction rolled back; retrying is safe.
    req.log.warn({ reqId: req.id, err: { type: 'StoreBusy', code: err.code } }, 'store busy');
    reply.header('retry-after', '1');
    return sendProblem(reply, req, 503, 'store_busy', 'The store is busy with another process; retry shortly.', {
      temporary: true,
      retry_after: 1,
    });
  }
  if (isStoreUnavailable(err)) {
    // The connection was lost or the store cannot write (disk full, read-only): nothing was committed.
    req.log.warn({ reqId: req.id, err: { type: 'StoreUnavailable', code: err.code } }, 'store unavailable');
    reply.header('retry-after', '5');
    return sendProblem(reply, req, 503, 'store_unavailable', 'The store is unavailable; retry shortly.', {
      temporary: true,
      retry_after: 5,
    });
  }
  const known = err.code ? FASTIFY_CODES[err.code] : undefined;
  if (known) return sendProblem(reply, req, known[0], known[1], known[2]);
  if (err instanceof SyntaxError || (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)) {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
    return sendProblem(reply, req, status, status === 400 ? 'bad_request' : `http_${status}`, 'The request could not be processed.');
  }
  req.log.error({ reqId: req.id, err: { type: err.name, code: err.code, stack: err.stack } }, 'unhandled error');
  return sendProblem(reply, req, 500, 'internal', 'An internal error occurred.');
};
