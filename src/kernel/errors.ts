/**
 * One error type for the whole application. Adapters map it once: HTTP to
 * application/problem+json, MCP to an isError result, SMTP to a 4xx/5xx reply,
 * the CLI to stderr and a non-zero exit. `detail` must never carry PHI,
 * message bodies, addresses or secrets.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly temporary: boolean;
  readonly detail: string;
  readonly extra: Record<string, unknown> | undefined;

  constructor(
    code: string,
    status: number,
    detail: string,
    opts: { temporary?: boolean; extra?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(detail, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = status;
    this.detail = detail;
    this.temporary = opts.temporary ?? false;
    this.extra = opts.extra;
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;

export const badRequest = (code: string, detail: string, extra?: Record<string, unknown>) => new AppError(code, 400, detail, { extra });
export const unauthorized = (detail = 'A valid API key is required.') => new AppError('unauthorized', 401, detail);
export const forbidden = (code: string, detail: string) => new AppError(code, 403, detail);
/** Resources of another tenant or agent answer 404, never 403 (CONTRACT.md, Auth). */
export const notFound = (what = 'resource') => new AppError('not_found', 404, `No such ${what}.`);
export const conflict = (code: string, detail: string) => new AppError(code, 409, detail);
export const unprocessable = (code: string, detail: string) => new AppError(code, 422, detail);
export const unavailable = (code: string, detail: string) => new AppError(code, 503, detail, { temporary: true });
