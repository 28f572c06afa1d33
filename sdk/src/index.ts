/**
 * @mailward/sdk: a typed client for the Mailward REST API.
 *
 * The types and the request layer are generated from the server's OpenAPI document (openapi-typescript types,
 * openapi-fetch requests: every path, body, query and answer is checked by the compiler). This file is the thin
 * hand-written layer on top: errors as a `MailwardError` carrying the problem's `code`, an idempotency key on every
 * send and reply (generated when not given, and reused on retries, so a retry never sends twice), and cursor
 * pagination as async iterators.
 */
import createClient, { type Client } from 'openapi-fetch';
import type { components, operations, paths } from './generated/api.js';

export type { components, operations, paths };
export type Schemas = components['schemas'];

type ProblemComponents = { [K in keyof Schemas as K extends `${string}Problem` ? K : never]: Schemas[K] };
/** RFC 9457 problem details, as every error of the API is answered. */
export type Problem = ProblemComponents[keyof ProblemComponents];
/** Every error code the API documents (the union of the codes each problem response lists). */
export type ErrorCode = Problem['code'];

/** An answer that was not 2xx: status, the stable `code` to switch on, and the server's problem details. */
export class MailwardError extends Error {
  readonly status: number;
  readonly code: ErrorCode | (string & {});
  readonly detail: string;
  readonly requestId: string | null;
  /** Whether retrying later can help (rate limits, a busy or unreachable store). */
  readonly temporary: boolean;
  /** Seconds the server asked to wait before retrying, if it said. */
  readonly retryAfter: number | undefined;
  readonly problem: Record<string, unknown>;

  constructor(status: number, problem: Record<string, unknown>) {
    const code = typeof problem.code === 'string' ? problem.code : `http_${status}`;
    const detail = typeof problem.detail === 'string' ? problem.detail : `HTTP ${status}`;
    super(`${detail} (${code})`);
    this.name = 'MailwardError';
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.requestId = typeof problem.request_id === 'string' ? problem.request_id : null;
    this.temporary = problem.temporary === true || status === 429 || status === 503;
    this.retryAfter = typeof problem.retry_after === 'number' ? problem.retry_after : undefined;
    this.problem = problem;
  }
}

export const isMailwardError = (e: unknown): e is MailwardError => e instanceof MailwardError;

type Answer<T> = { data?: T; error?: unknown; response: Response };

/** The data of a 2xx answer from the typed client, or a `MailwardError` for anything else. */
export const unwrap = async <T>(request: Promise<Answer<T>>): Promise<T> => {
  const { data, error, response } = await request;
  if (response.ok) return data as T;
  const problem =
    error && typeof error === 'object' ? (error as Record<string, unknown>) : { detail: String(error ?? response.statusText) };
  throw new MailwardError(response.status, problem);
};

/**
 * Every item of a cursor-paginated list, page after page, until `next_cursor` is null. `fetchPage` gets the
 * cursor of the page to read (undefined for the first).
 */
export async function* paginate<Page extends { next_cursor: string | null }, Item>(
  fetchPage: (cursor: string | undefined) => Promise<Page>,
  itemsOf: (page: Page) => readonly Item[],
): AsyncGenerator<Item, void, undefined> {
  let cursor: string | undefined;
  do {
    const page = await fetchPage(cursor);
    yield* itemsOf(page);
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
}

export type MailwardClientOptions = {
  /** Where `mailward serve` listens, e.g. http://127.0.0.1:8025 (MAILWARD_ADDR for the CLI). */
  baseUrl: string;
  /** An API key, `mw_<key id>_<secret>`. */
  apiKey: string;
  /** A fetch implementation (tests, proxies); the global fetch by default. */
  fetch?: (input: Request) => Promise<Response>;
  /** Retries of a send or reply after a temporary failure (network error, 429, 503), with the same key. Default 2. */
  sendRetries?: number;
};

export type SendOptions = {
  /** The Idempotency-Key; a random UUID when not given. Give your own to make retries across processes safe. */
  idempotencyKey?: string;
  /** Overrides the client's `sendRetries` for this call. */
  retries?: number;
};

type MessagesQuery = NonNullable<operations['listMessages']['parameters']['query']>;
type ApprovalsQuery = NonNullable<operations['listApprovals']['parameters']['query']>;
type AuditQuery = NonNullable<operations['listAuditEvents']['parameters']['query']>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A Mailward client. `api` is the generated, fully typed client for every operation
 * (`api.GET('/v1/agents/{id}', { params: { path: { id } } })`); the methods beside it cover what needs more
 * than one request or a rule of its own.
 */
export const createMailwardClient = (opts: MailwardClientOptions) => {
  const api: Client<paths> = createClient<paths>({
    baseUrl: opts.baseUrl.replace(/\/+$/, ''),
    headers: { authorization: `Bearer ${opts.apiKey}` },
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  const defaultRetries = opts.sendRetries ?? 2;

  /** Runs a send with one idempotency key, retrying temporary failures: the server returns the first message. */
  const withIdempotency = async <T>(o: SendOptions, attempt: (key: string) => Promise<T>): Promise<T> => {
    const key = o.idempotencyKey ?? crypto.randomUUID();
    const retries = o.retries ?? defaultRetries;
    for (let n = 0; ; n++) {
      try {
        return await attempt(key);
      } catch (e) {
        const retryable = isMailwardError(e) ? e.temporary : e instanceof TypeError; // TypeError: fetch failed (network)
        if (!retryable || n >= retries) throw e;
        const waitS = isMailwardError(e) && e.retryAfter !== undefined ? Math.min(e.retryAfter, 30) : 0.25 * 2 ** n;
        await sleep(waitS * 1000);
      }
    }
  };

  return {
    api,
    /** Who the key belongs to. */
    me: () => unwrap(api.GET('/v1/me')),
    /**
     * Sends from a mailbox (202: queued, or held as `pending_approval`). Always carries an Idempotency-Key, so
     * the retries after a network error or a 429/503 can never send twice.
     */
    sendEmail: (mailboxId: string, body: Schemas['SendEmailRequest'], o: SendOptions = {}) =>
      withIdempotency(o, (key) =>
        unwrap(api.POST('/v1/mailboxes/{id}/send', { params: { path: { id: mailboxId }, header: { 'idempotency-key': key } }, body })),
      ),
    /** Replies in the thread of a message, with the same idempotency rule as `sendEmail`. */
    replyEmail: (emailId: string, body: Schemas['ReplyEmailRequest'], o: SendOptions = {}) =>
      withIdempotency(o, (key) =>
        unwrap(api.POST('/v1/emails/{id}/reply', { params: { path: { id: emailId }, header: { 'idempotency-key': key } }, body })),
      ),
    /** One message with its events (the agent's own, or any for reviewers and admins). */
    getEmail: (emailId: string) => unwrap(api.GET('/v1/emails/{id}', { params: { path: { id: emailId } } })),
    /** Every message of a mailbox matching `query`, newest first, across pages. */
    messages: (mailboxId: string, query: Omit<MessagesQuery, 'cursor'> = {}) =>
      paginate(
        (cursor) =>
          unwrap(
            api.GET('/v1/mailboxes/{id}/messages', {
              params: { path: { id: mailboxId }, query: { ...query, ...(cursor ? { cursor } : {}) } },
            }),
          ),
        (page) => page.messages,
      ),
    /** Every approval matching `query` (default: pending), oldest first, across pages. */
    approvals: (query: Omit<ApprovalsQuery, 'cursor'> = {}) =>
      paginate(
        (cursor) => unwrap(api.GET('/v1/approvals', { params: { query: { ...query, ...(cursor ? { cursor } : {}) } } })),
        (page) => page.approvals,
      ),
    /** Every audit event matching `query`, oldest first, across pages (admin, auditor, privacy_officer). */
    auditEvents: (query: Omit<AuditQuery, 'cursor'> = {}) =>
      paginate(
        (cursor) => unwrap(api.GET('/v1/audit/events', { params: { query: { ...query, ...(cursor ? { cursor } : {}) } } })),
        (page) => page.events,
      ),
  };
};

export type MailwardClient = ReturnType<typeof createMailwardClient>;
