import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDialects } from './support/dialects.js';
import { seedMailbox } from './support/outbound-sink.js';
import { createTestApp, type TestApp } from './support/test-app.js';
import { waitFor } from './support/wait.js';

type Frame = { id?: string; event?: string; data?: string; comment?: string };

/** A Server-Sent Events client written here (WHATWG HTML 9.2 parsing, simplified to what the stream sends). */
const openStream = async (url: string, key: string, headers: Record<string, string> = {}) => {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream', ...headers }, signal: ac.signal });
  const frames: Frame[] = [];
  let done = false;
  if (res.ok && res.body) {
    void (async () => {
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      try {
        for (;;) {
          const { value, done: end } = await reader.read();
          if (end) break;
          buf += value;
          let i = buf.indexOf('\n\n');
          while (i >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const f: Frame = {};
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) f.comment = line.slice(1).trim();
              else {
                const at = line.indexOf(':');
                const k = line.slice(0, at);
                const v = line.slice(at + 1).replace(/^ /, '');
                if (k === 'id' || k === 'event' || k === 'data') f[k] = v;
              }
            }
            frames.push(f);
            i = buf.indexOf('\n\n');
          }
        }
      } catch {
        /* aborted */
      } finally {
        done = true;
      }
    })();
  }
  return {
    res,
    frames,
    events: () => frames.filter((f) => f.data).map((f) => ({ id: f.id!, event: f.event!, body: JSON.parse(f.data!) })),
    isDone: () => done,
    close: () => ac.abort(),
  };
};

for (const dialect of testDialects()) {
  describe(`events API and stream (${dialect})`, () => {
    let t: TestApp;
    let base: string;
    let n = 0;
    const consent = () =>
      t.call('PUT', `/v1/contacts/${encodeURIComponent(`p${++n}@example.org`)}/consent`, t.adminKey, {
        electronic: false,
        categories: [],
        source: 'phone',
      });

    beforeAll(async () => {
      t = await createTestApp(dialect, { env: { MAILWARD_SSE_HEARTBEAT_MS: '100', MAILWARD_SSE_MAX_STREAMS_PER_KEY: '2' } });
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    }, 60_000);
    afterAll(async () => {
      await t?.close();
    });

    it('pages every event exactly once with the cursor, oldest or newest first, filtered by type and time; agents see only their own mailboxes', async () => {
      const box = await seedMailbox(t, 'autonomous');
      const other = await seedMailbox(t, 'autonomous');
      for (let i = 0; i < 7; i++) expect((await consent()).status).toBe(200);
      const sent = await t.call('POST', `/v1/mailboxes/${box.mailbox.id}/send`, box.agentKey, {
        to: ['someone@elsewhere.example'],
        subject: 'Appointment',
        text: 'See you Tuesday',
      });
      expect(sent.status).toBe(202);
      await t.call('POST', `/v1/mailboxes/${other.mailbox.id}/send`, other.agentKey, {
        to: ['x@elsewhere.example'],
        subject: 'Hi',
        text: 'Hello',
      });

      // Ascending pages of 3 from the start: every event once, in seq order, and next_cursor always set.
      const all: { seq: number; id: string; type: string }[] = [];
      let cursor: string | undefined;
      for (;;) {
        const r = await t.call('GET', `/v1/events?limit=3${cursor ? `&cursor=${cursor}` : ''}`, t.adminKey);
        expect(r.status).toBe(200);
        expect(r.body.next_cursor).toBeTruthy();
        all.push(...r.body.events);
        cursor = r.body.next_cursor;
        if (r.body.events.length < 3) break;
      }
      const seqs = all.map((e) => e.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i));
      expect(all.filter((e) => e.type === 'consent.changed')).toHaveLength(7);
      // Nothing new: the cursor stays, and the next event appears after it.
      const idle = await t.call('GET', `/v1/events?cursor=${cursor}`, t.adminKey);
      expect(idle.body).toEqual({ events: [], next_cursor: cursor });
      await consent();
      const next = await t.call('GET', `/v1/events?cursor=${cursor}`, t.adminKey);
      expect(next.body.events.map((e: { type: string }) => e.type)).toEqual(['consent.changed']);

      const desc = await t.call('GET', '/v1/events?order=desc&types=consent.changed&limit=5', t.adminKey);
      expect(desc.body.events).toHaveLength(5);
      expect(desc.body.events[0].seq).toBeGreaterThan(desc.body.events[4].seq);
      const older = await t.call('GET', `/v1/events?order=desc&types=consent.changed&limit=5&cursor=${desc.body.next_cursor}`, t.adminKey);
      expect(older.body.events).toHaveLength(3);
      expect(older.body.next_cursor).toBeNull();
      const future = await t.call('GET', `/v1/events?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`, t.adminKey);
      expect(future.body.events).toEqual([]);
      // No PHI: consent events carry a hash, never the address.
      expect(JSON.stringify(all)).not.toContain('example.org');
      expect(JSON.stringify(all)).not.toContain('elsewhere.example');

      // An agent: only its own mailbox's events; another mailbox answers 404; without mail:read 403.
      const mine = await t.call('GET', '/v1/events?limit=500', box.agentKey);
      expect(mine.status).toBe(200);
      expect(mine.body.events.length).toBeGreaterThan(0);
      expect(mine.body.events.every((e: { mailbox_id: string }) => e.mailbox_id === box.mailbox.id)).toBe(true);
      expect((await t.call('GET', `/v1/events?mailbox_ids=${other.mailbox.id}`, box.agentKey)).status).toBe(404);
      expect((await t.call('GET', `/v1/events?mailbox_ids=${box.mailbox.id}`, box.agentKey)).status).toBe(200);
      const reviewerKey = await t.call('POST', `/v1/humans/${box.reviewer.id}/api-keys`, t.adminKey, { scopes: ['reviewer'] });
      expect((await t.call('GET', '/v1/events', reviewerKey.body.key)).status).toBe(403);
      expect((await t.call('GET', '/v1/events?cursor=bm90LWEtY3Vyc29y', t.adminKey)).body.code).toBe('invalid_cursor');
      expect((await t.call('GET', '/v1/events?types=email.nonsense', t.adminKey)).status).toBe(400);
    });

    it('streams events as they commit and resumes after a disconnect from Last-Event-ID without losing or repeating one', async () => {
      const s1 = await openStream(`${base}/v1/events/stream?types=consent.changed`, t.adminKey);
      expect(s1.res.status).toBe(200);
      expect(s1.res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      for (let i = 0; i < 3; i++) await consent();
      expect(await waitFor(() => s1.events().length >= 3)).toBe(true);
      // Heartbeats keep the connection alive.
      expect(await waitFor(() => s1.frames.some((f) => f.comment === 'heartbeat'))).toBe(true);
      const first = s1.events();
      expect(first.map((e) => e.event)).toEqual(['consent.changed', 'consent.changed', 'consent.changed']);
      expect(first.map((e) => String(e.body.seq))).toEqual(first.map((e) => e.id));
      s1.close();
      expect(await waitFor(() => s1.isDone())).toBe(true);

      // While disconnected, three more events commit.
      const missed: string[] = [];
      for (let i = 0; i < 3; i++) {
        await consent();
      }
      const fromLog = await t.call('GET', `/v1/events?types=consent.changed&order=desc&limit=3`, t.adminKey);
      for (const e of [...fromLog.body.events].reverse()) missed.push(e.id);

      const s2 = await openStream(`${base}/v1/events/stream?types=consent.changed`, t.adminKey, { 'last-event-id': first.at(-1)!.id });
      expect(await waitFor(() => s2.events().length >= 3)).toBe(true);
      await consent();
      expect(await waitFor(() => s2.events().length >= 4)).toBe(true);
      const resumed = s2.events();
      expect(resumed.slice(0, 3).map((e) => e.body.id)).toEqual(missed);
      const seqs = [...first, ...resumed].map((e) => Number(e.id));
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));

      // At most two open streams per key: a third is refused with 429.
      const s3 = await openStream(`${base}/v1/events/stream`, t.adminKey);
      expect(s3.res.status).toBe(200);
      const s4 = await openStream(`${base}/v1/events/stream`, t.adminKey);
      expect(s4.res.status).toBe(429);
      expect(((await s4.res.json()) as { code: string }).code).toBe('too_many_streams');
      s2.close();
      s3.close();
      // A closed stream frees its slot.
      expect(
        await waitFor(async () => {
          const s = await openStream(`${base}/v1/events/stream`, t.adminKey);
          s.close();
          return s.res.status === 200;
        }),
      ).toBe(true);
      const bad = await openStream(`${base}/v1/events/stream`, t.adminKey, { 'last-event-id': 'evt_nope' });
      expect(bad.res.status).toBe(400);
    });

    it('documents every event type with its data shape and every events and webhooks route with an operationId in the OpenAPI document', async () => {
      const doc = (await t.call('GET', '/openapi.json', null)).body;
      const ops = Object.values(doc.paths as Record<string, Record<string, { operationId?: string }>>).flatMap((m) =>
        Object.values(m).map((o) => o.operationId),
      );
      for (const id of [
        'listEvents',
        'streamEvents',
        'createWebhook',
        'listWebhooks',
        'getWebhook',
        'updateWebhook',
        'deleteWebhook',
        'rotateWebhookSecret',
        'replayWebhook',
        'listWebhookDeliveries',
      ])
        expect(ops).toContain(id);
      const type = doc.paths['/v1/events'].get.responses['200'].content['application/json'].schema.properties.events.items.properties.type;
      for (const name of ['email.received', 'email.bounced', 'approval.decided', 'consent.changed', 'webhook.disabled']) {
        expect(type.enum).toContain(name);
        expect(type.description).toContain(`${name}: `);
      }
    });
  });
}
