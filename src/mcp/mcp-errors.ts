import type { CallToolResult } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { AppError, isAppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import { isStoreBusy, isStoreUnavailable } from '../store/db.js';

/**
 * The error half of every tool's structured output: the same stable `code`
 * (and HTTP-like `status`) REST answers in problem+json, so an agent handles
 * `no_consent` or `mailbox_read_only` the same whichever protocol it speaks.
 */
export const toolErrorOut = z.object({
  error: z.looseObject({
    code: z.string(),
    status: z.number().int(),
    detail: z.string(),
    temporary: z.boolean(),
  }),
});

export const storeBusy = () =>
  new AppError('store_busy', 503, 'The store is busy with another process; retry shortly.', { temporary: true, extra: { retry_after: 1 } });

export const storeUnavailable = () =>
  new AppError('store_unavailable', 503, 'The store is unavailable; retry shortly.', { temporary: true, extra: { retry_after: 5 } });

/** A zod failure of tool arguments: 400 validation_failed with the paths, like REST. */
export const validationError = (issues: z.core.$ZodIssue[]) => {
  const errors = issues.slice(0, 20).map((i) => ({ path: `/${i.path.map(String).join('/')}`, message: i.message }));
  return new AppError(
    'validation_failed',
    400,
    `The tool arguments are invalid: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`.slice(0, 1000),
    { extra: { errors } },
  );
};

/**
 * Maps anything a tool threw to an isError result; never rethrows, so a tool
 * cannot take the server down. Unexpected errors say nothing about why
 * (the log has the error class, never PHI), exactly like REST's 500.
 */
export const toolErrorResult = (thrown: unknown, log: Pick<Logger, 'error'>, tool: string): CallToolResult => {
  // Another process held the SQLite writer past busy_timeout (transactions begin IMMEDIATE): the same 503 as REST.
  // A lost connection or a store that cannot write (disk full, read-only): the same 503 as REST.
  const e = isStoreBusy(thrown) ? storeBusy() : isStoreUnavailable(thrown) ? storeUnavailable() : thrown;
  let err: AppError;
  if (isAppError(e)) {
    err = e;
    if (e.status >= 500) log.error({ tool, code: e.code }, 'mcp tool failed');
  } else {
    const x = e as { name?: string; code?: unknown; stack?: string } | undefined;
    log.error({ tool, err: { type: x?.name ?? typeof e, code: x?.code, stack: x?.stack } }, 'mcp tool failed unexpectedly');
    err = new AppError('internal', 500, 'An internal error occurred.');
  }
  const error = { code: err.code, status: err.status, detail: err.detail, temporary: err.temporary, ...(err.extra ?? {}) };
  return {
    isError: true,
    content: [{ type: 'text', text: `Error ${err.code} (${err.status}): ${err.detail}\n${JSON.stringify({ error })}` }],
    structuredContent: { error },
  };
};
