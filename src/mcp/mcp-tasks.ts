import { ProtocolError, ProtocolErrorCode, type ServerContext } from '@modelcontextprotocol/server';
import { z } from 'zod';
import type { RequestContext } from '../identity/principal.js';
import { isAppError } from '../kernel/errors.js';
import type { McpDeps } from './mcp-tools.js';

/**
 * MCP Tasks for held sends: a send_email or reply_email that a human must approve answers, for a client that asked for
 * a task, with a task it can poll, whose status follows the approval. Two generations of the same idea:
 *
 * - 2026-07-28, the Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663): the client declares the extension in
 *   the request's client capabilities; the tools/call answer is `resultType: 'task'`; `tasks/get` returns the task with
 *   its `result` (completed) or `error` (failed) inline; `tasks/cancel` cancels.
 * - 2025-11-25 (core tasks): the client sends `params.task`; the answer is `{task}`; `tasks/get` returns the task,
 *   `tasks/result` the tool result once the task is terminal (waiting until then), `tasks/cancel` cancels.
 *
 * The MCP SDK 2.x carries the wire types of both but no task store or handlers (its Server lets a tools/call handler
 * return a task and lets `tasks/*` handlers be registered with explicit schemas), so this module is what it lacks. There
 * is no task table: the task id is the email id, and the message and its approval rows are the task's state, so a task
 * is the same in every process and across stateless HTTP requests, and another agent's task is not found exactly as
 * its email is not (the read service's own 404). Every tasks/get is a status read of the email, audited like
 * get_email_status.
 */
export const TASKS_EXTENSION = 'io.modelcontextprotocol/tasks';

/** How often a client should poll: a human decides, so seconds are plenty. */
export const TASK_POLL_MS = 2000;

/** tasks/result (2025-11-25) waits for a terminal status at most this long before answering that the task is still working. */
const RESULT_WAIT_MS = 110_000;

/** The tools whose held answers become tasks. */
export const TASK_TOOLS: ReadonlySet<string> = new Set(['send_email', 'reply_email']);

export type TaskGeneration = 'v1' | 'v2';

/** Which task generation a tools/call asked for, if any. */
export const taskRequestOf = (params: Record<string, unknown>, ctx: ServerContext): TaskGeneration | undefined => {
  const envelope = ctx.mcpReq.envelope as Record<string, unknown> | undefined;
  const caps = envelope?.['io.modelcontextprotocol/clientCapabilities'] as { extensions?: Record<string, unknown> } | undefined;
  if (caps?.extensions && Object.hasOwn(caps.extensions, TASKS_EXTENSION)) return 'v2';
  if (ctx.mcpReq.envelope === undefined && params.task !== undefined && typeof params.task === 'object') return 'v1';
  return undefined;
};

type Status = 'working' | 'completed' | 'failed' | 'cancelled';

type Snapshot = {
  taskId: string;
  status: Status;
  statusMessage: string;
  createdAt: string;
  lastUpdatedAt: string;
  /** The tool result of a completed task (the send as it stands now), or the refusal of a failed one. */
  toolResult?: { content: { type: 'text'; text: string }[]; structuredContent: Record<string, unknown>; isError?: boolean };
  error?: { code: number; message: string; data: Record<string, unknown> };
};

const TERMINAL = new Set<Status>(['completed', 'failed', 'cancelled']);

/** JSON-RPC code of a failed task's error: the server-error range (JSON-RPC 2.0 section 5.1), with the stable code in data. */
const TASK_FAILED = -32000;

const wire = {
  v2: (s: Snapshot) => ({
    taskId: s.taskId,
    status: s.status,
    statusMessage: s.statusMessage,
    createdAt: s.createdAt,
    lastUpdatedAt: s.lastUpdatedAt,
    // Kept as long as the email row (mail retention), not by a task timer.
    ttlMs: null,
    pollIntervalMs: TASK_POLL_MS,
  }),
  v1: (s: Snapshot) => ({
    taskId: s.taskId,
    status: s.status,
    statusMessage: s.statusMessage,
    createdAt: s.createdAt,
    lastUpdatedAt: s.lastUpdatedAt,
    ttl: null,
    pollInterval: TASK_POLL_MS,
  }),
};

/** The tools/call answer for a held send: a task in the client's generation. */
export const createdTask = (gen: TaskGeneration, emailId: string, at: string) => {
  const s: Snapshot = {
    taskId: emailId,
    status: 'working',
    statusMessage: 'Held for review: a human reviewer approves or rejects this message.',
    createdAt: at,
    lastUpdatedAt: at,
  };
  return gen === 'v2' ? { resultType: 'task', ...wire.v2(s) } : { task: wire.v1(s) };
};

const notFound = () => new ProtocolError(ProtocolErrorCode.InvalidParams, 'Task not found');

const taskIdParams = z.looseObject({ taskId: z.string().regex(/^msg_[0-9a-f]{32}$/) });

type Email = {
  id: string;
  direction: string;
  status: string;
  status_reason: Record<string, unknown> | null;
  thread_id: string;
  created_at: string;
  updated_at?: string;
  approval?: { status: string; decided_at?: string | null; created_at: string } | null;
};

/** Where the task stands: read from the email and its approval; 404 (another agent's, or not a held send) is "not found". */
const snapshot = async (deps: McpDeps, ctx: RequestContext, taskId: string): Promise<Snapshot> => {
  let e: Email;
  try {
    e = (await deps.reader.get(ctx, taskId)) as unknown as Email;
  } catch (err) {
    if (isAppError(err) && err.status === 404) throw notFound();
    throw err;
  }
  if (e.direction !== 'outbound' || !e.approval) throw notFound();
  const last = e.approval.decided_at ?? e.updated_at ?? e.created_at;
  const base = { taskId, createdAt: e.created_at, lastUpdatedAt: last };
  const sent = { id: e.id, status: e.status, thread_id: e.thread_id };
  const reason = e.status_reason ?? {};
  if (e.status === 'pending_approval') {
    return { ...base, status: 'working', statusMessage: 'Held for review: a human reviewer approves or rejects this message.' };
  }
  if (e.status === 'cancelled') return { ...base, status: 'cancelled', statusMessage: 'Cancelled before it was sent.' };
  if (e.status === 'rejected' && reason.code === 'expired') {
    // Nobody decided within MAILWARD_APPROVAL_TTL: the request ended without completing.
    return { ...base, status: 'cancelled', statusMessage: 'The review expired undecided; the message was not sent.' };
  }
  if (e.status === 'rejected') {
    const error = { code: 'rejected', status: 422, detail: 'A reviewer rejected this message; it was not sent.', temporary: false, reason };
    return {
      ...base,
      status: 'failed',
      statusMessage: error.detail,
      error: { code: TASK_FAILED, message: error.detail, data: { ...sent, error } },
      toolResult: {
        isError: true,
        content: [{ type: 'text', text: `Error rejected (422): ${error.detail}\n${JSON.stringify({ error })}` }],
        structuredContent: { error },
      },
    };
  }
  return {
    ...base,
    status: 'completed',
    statusMessage: `Approved: email ${e.id} is ${e.status}.`,
    toolResult: {
      content: [{ type: 'text', text: `Approved: email ${e.id}, status ${e.status}, thread ${e.thread_id}.\n${JSON.stringify(sent)}` }],
      structuredContent: sent,
    },
  };
};

type On = (
  method: string,
  params: typeof taskIdParams,
  handler: (p: z.infer<typeof taskIdParams>, ctx: ServerContext) => Promise<Record<string, unknown>>,
) => void;

/**
 * Registers tasks/get, tasks/cancel and (2025-11-25) tasks/result. The server's era decides which answer shape a
 * request gets: a 2026-07-28 request carries the envelope.
 */
export const registerTaskHandlers = (register: On, deps: McpDeps, context: () => Promise<RequestContext>) => {
  // A refusal (scope, rate limit, a store that is busy) is a JSON-RPC error carrying the same stable code as REST.
  const on: On = (method, params, handler) =>
    register(method, params, (p, sctx) =>
      handler(p, sctx).catch((err: unknown) => {
        if (!isAppError(err)) throw err;
        const code = err.status >= 500 ? ProtocolErrorCode.InternalError : ProtocolErrorCode.InvalidRequest;
        throw new ProtocolError(code, err.detail, { code: err.code, status: err.status, temporary: err.temporary });
      }),
    );
  const genOf = (ctx: ServerContext): TaskGeneration => (ctx.mcpReq.envelope === undefined ? 'v1' : 'v2');

  on('tasks/get', taskIdParams, async ({ taskId }, sctx) => {
    const s = await snapshot(deps, await context(), taskId);
    if (genOf(sctx) === 'v1') return wire.v1(s);
    return {
      ...wire.v2(s),
      // The inline result is a 2026-07-28 CallToolResult, which names its resultType.
      ...(s.status === 'completed' && s.toolResult ? { result: { resultType: 'complete', ...s.toolResult } } : {}),
      ...(s.status === 'failed' && s.error ? { error: s.error } : {}),
    };
  });

  on('tasks/cancel', taskIdParams, async ({ taskId }, sctx) => {
    const ctx = await context();
    await snapshot(deps, ctx, taskId);
    await deps.apiKeys.assertLive(ctx);
    try {
      await deps.mail.cancel(ctx, taskId);
    } catch (err) {
      // Already decided or sent: the task is terminal and cannot be cancelled (2025-11-25 tasks/cancel: -32602).
      if (isAppError(err) && err.status < 500) {
        throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Task cannot be cancelled: ${err.code}`);
      }
      throw err;
    }
    const s = await snapshot(deps, ctx, taskId);
    return genOf(sctx) === 'v1' ? wire.v1(s) : {};
  });

  on('tasks/result', taskIdParams, async ({ taskId }, sctx) => {
    const ctx = await context();
    const started = Date.now();
    let s = await snapshot(deps, ctx, taskId);
    // 2025-11-25 tasks/result: the receiver answers once the task is terminal.
    while (!TERMINAL.has(s.status) && Date.now() - started < RESULT_WAIT_MS && !sctx.mcpReq.signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, TASK_POLL_MS));
      s = await snapshot(deps, ctx, taskId);
    }
    if (s.status === 'cancelled') throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'Task was cancelled; it has no result');
    if (!TERMINAL.has(s.status)) throw new ProtocolError(ProtocolErrorCode.InternalError, 'Task is still working; poll tasks/get');
    return s.toolResult ?? {};
  });
};
