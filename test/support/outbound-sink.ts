import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { SMTPServer } from 'smtp-server';
import { expect } from 'vitest';
import { headerValue, splitMessage } from '../../src/mail/mime.js';
import { seedAgent, type TestApp } from './test-app.js';

/** PEM texts, and the files they are in (`caFile` is the certificate, which is its own CA). */
export type SinkCert = { private: string; cert: string; caFile: string; keyFile: string };

/** `cipher` is what the sink's side of the TLS handshake negotiated (node:tls getCipher), when the session had TLS. */
export type SinkMessage = {
  from: string;
  to: string[];
  raw: Buffer;
  tls: boolean;
  cipher?: { name: string; standardName?: string; version: string };
};

/** A loopback SMTP sink on port 0 with a real STARTTLS certificate; `replies` scripts answers to DATA. */
export type Sink = {
  port: number;
  caFile: string;
  messages: SinkMessage[];
  /** SMTP sessions opened so far (connection reuse shows as fewer sessions than messages). */
  readonly sessions: number;
  /** SMTP sessions ended so far. */
  readonly closedSessions: number;
  /** Answers for the next DATA commands, in order; empty means 250. */
  replies: { code: number; text: string }[];
  waitFor: (n: number, timeoutMs?: number) => Promise<void>;
  close: () => Promise<void>;
};

/**
 * A self-signed certificate for localhost and 127.0.0.1, made with the openssl
 * CLI: the `selfsigned` package fails in this tree (two @peculiar/asn1-schema
 * versions, mailauth's older one hoisted).
 */
export const selfSignedCert = (dir: string): SinkCert => {
  const key = path.join(dir, 'sink-key.pem');
  const cert = path.join(dir, 'sink-cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { private: fs.readFileSync(key, 'utf8'), cert: fs.readFileSync(cert, 'utf8'), caFile: cert, keyFile: key };
};

/**
 * `replyDelayMs` holds each 250 back; a message whose client vanished before
 * its 250 was written is not counted (the client never learnt it was accepted).
 */
export const startSink = async (
  dir: string,
  opts: {
    tls?: boolean;
    port?: number;
    cert?: SinkCert;
    replyDelayMs?: number;
    tlsMaxVersion?: 'TLSv1.2' | 'TLSv1.3';
    /** Closes a session idle this long (smtp-server's socketTimeout). */
    idleTimeoutMs?: number;
    /** Runs after a message's data has arrived and before the sink answers it (the sender waits for the reply). */
    beforeReply?: () => Promise<void>;
  } = {},
): Promise<Sink> => {
  const withTls = opts.tls ?? true;
  const pems = opts.cert ?? selfSignedCert(fs.mkdtempSync(path.join(dir, 'cert-')));
  const caFile = pems.caFile;
  const messages: SinkMessage[] = [];
  const replies: { code: number; text: string }[] = [];
  const closed = new Set<string>();
  let sessions = 0;
  const server = new SMTPServer({
    onConnect(_session, callback) {
      sessions++;
      callback();
    },
    ...(opts.idleTimeoutMs ? { socketTimeout: opts.idleTimeoutMs } : {}),
    onClose(session) {
      closed.add(session.id);
    },
    secure: false,
    disabledCommands: withTls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    ...(withTls ? { key: pems.private, cert: pems.cert, ...(opts.tlsMaxVersion ? { maxVersion: opts.tlsMaxVersion } : {}) } : {}),
    logger: false,
    size: 50 * 1024 * 1024,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', async () => {
        if (opts.replyDelayMs) await new Promise((res) => setTimeout(res, opts.replyDelayMs));
        if (opts.beforeReply) await opts.beforeReply();
        if (closed.has(session.id)) {
          callback(new Error('client gone'));
          return;
        }
        const r = replies.shift();
        if (r && r.code !== 250) {
          callback(Object.assign(new Error(r.text), { responseCode: r.code }));
          return;
        }
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((x) => x.address),
          raw: Buffer.concat(chunks),
          tls: !!session.secure,
          ...(session.secure && session.tlsOptions ? { cipher: session.tlsOptions as unknown as NonNullable<SinkMessage['cipher']> } : {}),
        });
        callback();
      });
    },
  });
  // A client killed mid-session (the crash test) resets its connection; that is expected, not a failure.
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as { port: number }).port;
  return {
    port,
    caFile,
    messages,
    get sessions() {
      return sessions;
    },
    get closedSessions() {
      return closed.size;
    },
    replies,
    waitFor: async (n, timeoutMs = 15_000) => {
      const end = Date.now() + timeoutMs;
      while (messages.length < n) {
        if (Date.now() > end) throw new Error(`sink received ${messages.length} of ${n} messages`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};

/** Environment for a test app delivering through `sink`: STARTTLS trusted by its CA, retries at once, fast polling. */
export const relayEnv = (sink: Pick<Sink, 'port' | 'caFile'>, extra: Record<string, string> = {}): Record<string, string> => ({
  MAILWARD_SMTP_RELAY: `smtp://127.0.0.1:${sink.port}`,
  MAILWARD_SMTP_TLS_CA_FILE: sink.caFile,
  MAILWARD_DELIVERY_RETRY_SCHEDULE: '0,0,0',
  MAILWARD_APPROVAL_TTL: '3600',
  MAILWARD_DELIVERY_POLL_MS: '20',
  ...extra,
});

/** Runs delivery passes until nothing is due. */
export const drainDeliveries = async (t: TestApp) => {
  for (let i = 0; i < 50; i++) if ((await t.c.mail.delivery.runOnce()) === 0) return;
};

/** What the sink received with this Message-ID. */
export const receivedWithId = (sink: Pick<Sink, 'messages'>, messageId: string) =>
  sink.messages.filter((m) => headerValue(splitMessage(m.raw).header, 'Message-ID') === messageId);

/** A fresh agent with a mailbox in `mode`, created through the API. */
export const seedMailbox = async (t: TestApp, mode: string, extra: Record<string, unknown> = {}) => {
  const s = await seedAgent(t, `Agent ${mode} ${Math.random().toString(36).slice(2, 6)}`);
  const r = await t.call('POST', '/v1/mailboxes', t.adminKey, {
    agent_id: s.agent.id,
    display_name: 'Clinic Assistant',
    oversight_mode: mode,
    ...extra,
  });
  expect(r.status).toBe(201);
  return { ...s, mailbox: r.body };
};
