import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { createSmtpPool } from '../src/mail/smtp-pool.js';
import { tempDir } from './support/dialects.js';
import { type Sink, startSink } from './support/outbound-sink.js';
import { waitFor } from './support/wait.js';

const envelope = { from: 'agent@hospital.example', to: ['patient@clinic.example'] };
const raw = (i: number) => Buffer.from(`From: agent@hospital.example\r\nSubject: ${i}\r\n\r\n.leading dot line ${i}\r\n`);

describe('the delivery SMTP pool (src/mail/smtp-pool.ts) against a loopback STARTTLS sink', () => {
  const dir = tempDir('mw-smtp-pool');
  const sinks: Sink[] = [];
  afterAll(async () => {
    for (const s of sinks) await s.close();
  });
  const poolFor = (sink: Sink, o: { maxConnections?: number; maxMessages?: number } = {}) =>
    createSmtpPool({
      maxConnections: o.maxConnections ?? 2,
      maxMessages: o.maxMessages ?? 100,
      host: '127.0.0.1',
      port: sink.port,
      secure: false,
      requireTLS: true,
      name: 'hospital.example',
      tls: { rejectUnauthorized: true, ca: fs.readFileSync(sink.caFile) },
    });

  it('reuses sessions up to maxConnections, opens a new one after maxMessages, and keeps the bytes (dot-stuffing undone by the server)', async () => {
    const sink = await startSink(dir);
    sinks.push(sink);
    const pool = poolFor(sink, { maxConnections: 2, maxMessages: 5 });
    try {
      const out = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.send(envelope, raw(i))));
      expect(out.every((o) => o.response.startsWith('250') && o.tls?.version === 'TLSv1.3')).toBe(true);
      expect(sink.messages).toHaveLength(10);
      // 10 messages, at most 2 at a time, at most 5 each: at least 2 sessions and far fewer than one per message.
      expect(sink.sessions).toBeGreaterThanOrEqual(2);
      expect(sink.sessions).toBeLessThanOrEqual(4);
      expect(sink.messages.map((m) => m.raw.toString()).sort()).toEqual(Array.from({ length: 10 }, (_, i) => raw(i).toString()).sort());
    } finally {
      pool.close();
    }
  });

  it('opens a fresh session after the server closed an idle one, and closes the failing one after a refusal', async () => {
    const sink = await startSink(dir, { idleTimeoutMs: 300 });
    sinks.push(sink);
    const pool = poolFor(sink, { maxConnections: 1 });
    try {
      await pool.send(envelope, raw(1));
      const first = sink.sessions;
      // The server ends the idle session (421, then close); the pool must not fail the next message on it.
      expect(await waitFor(() => sink.closedSessions === first)).toBe(true);
      await pool.send(envelope, raw(2));
      expect(sink.sessions).toBe(first + 1);
      sink.replies.push({ code: 550, text: '5.1.1 no such user' });
      await expect(pool.send(envelope, raw(3))).rejects.toMatchObject({ responseCode: 550, negotiatedTls: { version: 'TLSv1.3' } });
      await pool.send(envelope, raw(4));
      expect(sink.sessions).toBe(first + 2);
      expect(sink.messages).toHaveLength(3);
    } finally {
      pool.close();
    }
  });
});
