import type { AddressInfo } from 'node:net';
import { createTaskSessionFromClient, type RawClientDispatch, resultFromTaskOutcome } from '@modelcontextprotocol/ext-tasks/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { connectHttp, type McpClient } from './support/mcp-client.js';
import { rawStdio } from './support/mcp-stdio-raw.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';

const TASKS = 'io.modelcontextprotocol/tasks';
const MODERN = '2026-07-28';
/** The `_meta` every 2026-07-28 request carries: its version, the client, and the client's capabilities. */
const modernMeta = (clientCapabilities: { extensions?: Record<string, Record<string, never>> } = {}) => ({
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: 'x', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': clientCapabilities,
});

// A held send answered as a task the client polls, in both generations of MCP tasks: the 2026-07-28 Tasks extension
// (driven by the official ext-tasks client on the MCP SDK 2.x client) and 2025-11-25 core tasks (the same ext-tasks
// client over a 2025-era SDK 2.x connection). The task is the email: its status follows the reviewer's decision.
for (const dialect of testDialects()) {
  describe(`MCP tasks for held sends (${dialect})`, () => {
    let t: TestApp;
    let port: number;
    let box: Awaited<ReturnType<typeof seedMailbox>>;
    let other: Awaited<ReturnType<typeof seedMailbox>>;
    let reviewerKey: string;
    const clients: McpClient[] = [];
    let n = 0;

    /** A raw 2026-07-28 POST to /mcp as `key` (ext-tasks' host dispatch: the SDK client refuses `resultType: 'task'`). */
    const dispatchAs =
      (key: string): RawClientDispatch =>
      async (request) => {
        const r = request as { method: string; params?: { name?: unknown; taskId?: unknown } };
        // SEP-2243: Mcp-Name carries the tool name of a tools/call and the task id of a tasks/* request.
        const name = r.params?.name ?? r.params?.taskId;
        const res = await fetch(`http://127.0.0.1:${port}/mcp`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            authorization: `Bearer ${key}`,
            'mcp-protocol-version': MODERN,
            'mcp-method': r.method,
            ...(typeof name === 'string' ? { 'mcp-name': name } : {}),
          },
          // ext-tasks hands over method and params; the host frames the JSON-RPC request.
          body: JSON.stringify({ jsonrpc: '2.0', id: ++n, ...(request as object) }),
        });
        const body = (await res.json()) as { result?: any; error?: any };
        return body.error ? { kind: 'error', error: body.error } : { kind: 'result', result: body.result };
      };

    const modernSession = async (key: string) => {
      const c = await connectHttp(port, key, 'modern');
      clients.push(c);
      return createTaskSessionFromClient(c.client, {
        endpointId: `mailward-${dialect}`,
        rawDispatch: dispatchAs(key),
        v2RequestFraming: {
          protocolVersion: MODERN,
          clientInfo: { name: 'mailward-tasks-test', version: '1.0.0' },
          clientCapabilities: { extensions: { [TASKS]: {} } },
        },
      });
    };

    const approvalOf = async (emailId: string) => {
      const list = await t.call('GET', '/v1/approvals?status=pending', reviewerKey);
      return list.body.approvals.find((a: { email_id: string }) => a.email_id === emailId) as { id: string };
    };
    const sendArgs = () => ({
      mailbox_id: box.mailbox.id,
      to: ['pharmacy@example.org'],
      subject: 'Refill request',
      text: 'Please refill.',
      idempotency_key: `task-${++n}`,
    });

    beforeAll(async () => {
      t = await createTestApp(dialect);
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      port = (t.app.server.address() as AddressInfo).port;
      box = await seedMailbox(t, 'gated_send');
      other = await seedMailbox(t, 'gated_send');
      const hk = await t.call('POST', `/v1/humans/${box.reviewer.id}/api-keys`, t.adminKey, {});
      reviewerKey = hk.body.key;
    });

    afterAll(async () => {
      for (const c of clients) await c.close().catch(() => {});
      t?.app.server.closeAllConnections();
      await t?.close();
    });

    it('announces tasks in both generations and marks the send tools as task-capable', async () => {
      const c = await connectHttp(port, box.agentKey, 'modern');
      const old = await connectHttp(port, box.agentKey, 'legacy');
      clients.push(c, old);
      expect(c.client.getServerCapabilities()?.extensions?.[TASKS]).toEqual({});
      expect(old.client.getServerCapabilities()?.tasks).toMatchObject({ requests: { tools: { call: {} } }, cancel: {} });
      const send = (await old.client.listTools()).tools.find((x) => x.name === 'send_email');
      expect(send?.execution?.taskSupport).toBe('optional');
    });

    it('2026-07-28: a held send_email is a task that completes with the send result once a reviewer approves', async () => {
      const session = await modernSession(box.agentKey);
      try {
        const execution = await session.callTool('send_email', sendArgs());
        expect(execution.kind).toBe('task');
        if (execution.kind !== 'task') return;
        const emailId = execution.handle.taskId;
        expect(emailId).toMatch(/^msg_/);
        // Polled by a fresh stateless request: the task lives in the store, not in the request that made it.
        const seen = await dispatchAs(box.agentKey)({
          jsonrpc: '2.0',
          id: 99,
          method: 'tasks/get',
          params: {
            taskId: emailId,
            _meta: modernMeta(),
          },
        });
        expect(seen).toMatchObject({ kind: 'result', result: { taskId: emailId, status: 'working', resultType: 'complete' } });
        const ok = await t.call('POST', `/v1/approvals/${(await approvalOf(emailId)).id}/approve`, reviewerKey, { comment: 'fine' });
        expect(ok.status).toBe(200);
        const { outcome } = await execution.settle();
        expect(outcome.status).toBe('completed');
        const result = resultFromTaskOutcome(outcome) as unknown as { structuredContent: { id: string; status: string } };
        expect(result.structuredContent.id).toBe(emailId);
        expect(['queued', 'sending', 'delivered']).toContain(result.structuredContent.status);
      } finally {
        await session.close();
      }
    });

    it('2026-07-28: a rejected send fails, and another agent cannot see the task', async () => {
      const session = await modernSession(box.agentKey);
      try {
        const execution = await session.callTool('send_email', sendArgs());
        if (execution.kind !== 'task') throw new Error('expected a task');
        const emailId = execution.handle.taskId;
        // Another agent's key: the task is not found, exactly as the email is not.
        const stranger = await dispatchAs(other.agentKey)({
          jsonrpc: '2.0',
          id: 7,
          method: 'tasks/get',
          params: {
            taskId: emailId,
            _meta: modernMeta(),
          },
        });
        expect(stranger).toMatchObject({ kind: 'error', error: { code: -32602, message: 'Task not found' } });
        const no = await t.call('POST', `/v1/approvals/${(await approvalOf(emailId)).id}/reject`, reviewerKey, {
          comment: 'wrong pharmacy',
        });
        expect(no.status).toBe(200);
        const { outcome } = await execution.settle();
        expect(outcome.status).toBe('failed');
        if (outcome.status === 'failed') expect(JSON.stringify(outcome.error)).toContain('rejected');
      } finally {
        await session.close();
      }
    });

    it('2026-07-28: cancelling the task cancels the held email', async () => {
      const session = await modernSession(box.agentKey);
      try {
        const execution = await session.callTool('send_email', sendArgs());
        if (execution.kind !== 'task') throw new Error('expected a task');
        await execution.cancel();
        const st = await t.call('GET', `/v1/emails/${execution.handle.taskId}`, box.agentKey);
        expect(st.body.status).toBe('cancelled');
        const { outcome } = await execution.settle();
        expect(outcome.status).toBe('cancelled');
      } finally {
        await session.close();
      }
    });

    it('2026-07-28: a review that expires undecided ends the task as cancelled', async () => {
      const session = await modernSession(box.agentKey);
      try {
        const execution = await session.callTool('send_email', sendArgs());
        if (execution.kind !== 'task') throw new Error('expected a task');
        // MAILWARD_APPROVAL_TTL passed: the sweeper rejects it as expired.
        await t.c.store.db
          .updateTable('approvals')
          .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
          .where('message_id', '=', execution.handle.taskId)
          .execute();
        expect(await t.c.mail.approvals.expireDue()).toBeGreaterThanOrEqual(1);
        const { outcome } = await execution.settle();
        expect(outcome.status).toBe('cancelled');
      } finally {
        await session.close();
      }
    });

    it('2025-11-25: a client that asks for a task gets one it polls with tasks/get and reads with tasks/result', async () => {
      const c = await connectHttp(port, box.agentKey, 'legacy');
      clients.push(c);
      const session = createTaskSessionFromClient(c.client, { endpointId: `mailward-v1-${dialect}` });
      try {
        const execution = await session.callTool('send_email', sendArgs(), { task: { preference: 'require' } });
        expect(execution.kind).toBe('task');
        if (execution.kind !== 'task') return;
        const emailId = execution.handle.taskId;
        await t.call('POST', `/v1/approvals/${(await approvalOf(emailId)).id}/approve`, reviewerKey, { comment: 'fine' });
        const { outcome } = await execution.settle();
        expect(outcome.status).toBe('completed');
        const result = resultFromTaskOutcome(outcome) as unknown as { structuredContent: { id: string } };
        expect(result.structuredContent.id).toBe(emailId);
      } finally {
        await session.close();
      }
    });

    it('serves a task made over HTTP to another process on the same store (mailward mcp over stdio)', { timeout: 300_000 }, async () => {
      const made = await dispatchAs(box.agentKey)({
        method: 'tools/call',
        params: {
          name: 'send_email',
          arguments: sendArgs(),
          _meta: modernMeta({ extensions: { [TASKS]: {} } }),
        },
      });
      expect(made).toMatchObject({ kind: 'result', result: { resultType: 'task', status: 'working' } });
      const emailId = (made as unknown as { result: { taskId: string } }).result.taskId;
      const s = rawStdio({ ...t.env, MAILWARD_API_KEY: box.agentKey, MAILWARD_LOG_LEVEL: 'warn' });
      try {
        await s.send(
          JSON.stringify({
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'other-process', version: '1' } },
          }),
        );
        expect((await s.answer((a) => a.id === 1)).result.capabilities.tasks).toBeTruthy();
        await s.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
        await s.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tasks/get', params: { taskId: emailId } }));
        expect((await s.answer((a) => a.id === 2)).result).toMatchObject({ taskId: emailId, status: 'working' });
        await t.call('POST', `/v1/approvals/${(await approvalOf(emailId)).id}/approve`, reviewerKey, { comment: 'fine' });
        await s.send(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tasks/result', params: { taskId: emailId } }));
        expect((await s.answer((a) => a.id === 3)).result.structuredContent.id).toBe(emailId);
      } finally {
        s.child.kill('SIGTERM');
        await s.exited;
      }
    });

    it('keeps the held answer for clients that did not ask for a task', async () => {
      const c = await connectHttp(port, box.agentKey, 'modern');
      clients.push(c);
      const r = await c.call('send_email', sendArgs());
      expect(r.isError).toBeFalsy();
      expect(r.structuredContent).toMatchObject({ status: 'pending_approval' });
      const st = await c.call('get_email_status', { email_id: r.structuredContent.id });
      expect(st.structuredContent.status).toBe('pending_approval');
    });
  });
}
