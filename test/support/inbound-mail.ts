import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
// mailauth's types require top-level signing fields; at runtime several signatures go in signatureData.
import { type DKIMSignOptions, dkimSign } from 'mailauth';
import { createTransport } from 'nodemailer';
import { createLogger, type Logger } from '../../src/kernel/log.js';
import { createSmtpListener } from '../../src/smtp/smtp-listener.js';
import { loadSmtpTls } from '../../src/smtp/tls-cert.js';
import type { Config } from '../../src/app/config.js';
import type { TestApp } from './test-app.js';

/**
 * Outside senders for inbound tests: `lab.example` publishes DKIM, SPF
 * (127.0.0.1 allowed) and DMARC p=reject; `forged.example` publishes DMARC
 * p=reject but an SPF that excludes loopback, so only a valid DKIM signature
 * can pass it. Answered through MAILWARD_DNS_OVERRIDES. `orgDomain`: the
 * organisation's own domain also publishes DMARC p=reject (sp=none for its
 * subdomains) and an SPF that excludes loopback, as for mail spoofing it.
 */
export const outsideSenders = (dir: string, opts: { orgDomain?: string } = {}) => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pub = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const overrides = {
    TXT: {
      'sel._domainkey.lab.example': [`v=DKIM1; k=rsa; p=${pub}`],
      'lab.example': ['v=spf1 ip4:127.0.0.1 -all'],
      '_dmarc.lab.example': ['v=DMARC1; p=reject'],
      'sel._domainkey.forged.example': [`v=DKIM1; k=rsa; p=${pub}`],
      'forged.example': ['v=spf1 ip4:192.0.2.1 -all'],
      '_dmarc.forged.example': ['v=DMARC1; p=reject'],
      'relaxed.example': ['v=spf1 ip4:192.0.2.1 -all'],
      '_dmarc.relaxed.example': ['v=DMARC1; p=none'],
      ...(opts.orgDomain
        ? { [opts.orgDomain]: ['v=spf1 ip4:192.0.2.1 -all'], [`_dmarc.${opts.orgDomain}`]: ['v=DMARC1; p=reject; sp=none'] }
        : {}),
    } as Record<string, string[]>,
  };
  const file = path.join(dir, 'dns-overrides.json');
  fs.writeFileSync(file, JSON.stringify(overrides));
  /** DKIM-signs raw bytes for `domain` (rsa-sha256, selector sel) and returns signature + message. */
  const sign = async (raw: Buffer | string, domain = 'lab.example') => {
    const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
    const r = await dkimSign(buf, { signatureData: [{ signingDomain: domain, selector: 'sel', privateKey: pem }] } as DKIMSignOptions);
    return Buffer.concat([Buffer.from(r.signatures), buf]);
  };
  return { file, sign };
};

/** A simple RFC 5322 message with CRLF line ends. */
export const rawMessage = (o: {
  from?: string;
  to: string;
  subject?: string;
  body?: string;
  headers?: Record<string, string>;
  messageId?: string;
}) =>
  Buffer.from(
    [
      `From: ${o.from ?? 'Lab Results <results@lab.example>'}`,
      `To: ${o.to}`,
      `Subject: ${o.subject ?? 'Your lab results'}`,
      `Message-ID: ${o.messageId ?? `<${Math.random().toString(36).slice(2)}@lab.example>`}`,
      'Date: Mon, 23 Nov 2026 10:00:00 +0000',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      ...Object.entries(o.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
      '',
      o.body ?? 'Hello, the results are ready.',
      '',
    ].join('\r\n'),
  );

export type Inbound = {
  port: number;
  ca: Buffer;
  /** Sends raw bytes over SMTP with STARTTLS required; resolves with the server's reply, rejects with the SMTP error. */
  sendRaw: (raw: Buffer, envelope: { from: string; to: string[] }) => Promise<{ response: string }>;
  close: () => Promise<void>;
};

/** The real SMTP listener of a test app on a free loopback port, with the development certificate generated in its data dir. */
export const startInbound = async (
  t: TestApp,
  patch: (c: Config) => Config = (c) => c,
  opts: { logger?: Logger; withMetrics?: boolean } = {},
): Promise<Inbound> => {
  const config = patch(t.c.config);
  const tls = loadSmtpTls(config);
  const listener = createSmtpListener({
    receiver: t.c.inbound.receiver,
    config,
    tls,
    logger: opts.logger ?? createLogger({ level: 'silent' }),
    ...(opts.withMetrics ? { metrics: t.c.metrics.sink } : {}),
  });
  const port = await listener.listen(0, '127.0.0.1');
  const sendRaw = async (raw: Buffer, envelope: { from: string; to: string[] }) => {
    const tr = createTransport({
      host: '127.0.0.1',
      port,
      secure: false,
      requireTLS: true,
      tls: { ca: tls.cert, servername: 'localhost' },
      name: 'mx.lab.example',
      disableFileAccess: true,
      disableUrlAccess: true,
    });
    try {
      const info = await tr.sendMail({ envelope, raw });
      return { response: String(info.response) };
    } finally {
      tr.close();
    }
  };
  return { port, ca: tls.cert, sendRaw, close: () => listener.close() };
};

/** The SMTP reply code of a failed nodemailer send. */
export const smtpCode = async (p: Promise<unknown>): Promise<number | string> => {
  try {
    await p;
    return 250;
  } catch (e) {
    const err = e as { responseCode?: number; code?: string; rejectedErrors?: { responseCode?: number }[] };
    return err.responseCode ?? err.rejectedErrors?.[0]?.responseCode ?? err.code ?? 'error';
  }
};
