import os from 'node:os';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { isAppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import type { ReceiveService } from '../inbound/receive-service.js';

/** The settings the listener reads (STYLE.md: each module declares its own config type; `app/config.ts`'s `Config` satisfies it). */
export type SmtpListenerConfig = {
  smtp: { host: string; port: number; maxMessageBytes: number };
  inbound: {
    /** Name in the greeting and EHLO answer; default the machine's host name. */
    hostname: string | undefined;
    /** Refuse MAIL FROM before STARTTLS (530 5.7.0); off by default, as public MX must accept opportunistic TLS (RFC 3207). */
    requireTls: boolean;
    maxClients: number;
    maxClientsPerIp: number;
    /** Messages per client address per minute; 0: no limit. */
    ratePerMinute: number;
    maxRecipients: number;
  };
};

type Deps = {
  receiver: Pick<ReceiveService, 'checkRecipient' | 'receive'>;
  config: SmtpListenerConfig;
  tls: { key: Buffer; cert: Buffer };
  logger: Logger;
};

/** An SMTP reply: code and text (with its RFC 3463 enhanced status code, as smtp-server leaves them to us). */
const reply = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });

const clientIp = (s: Pick<SMTPServerSession, 'remoteAddress'>) => (s.remoteAddress ?? '').replace(/^::ffff:/, '');

/**
 * The inbound SMTP adapter (smtp-server): limits, STARTTLS and replies; the
 * rules live in the receive service. Accepts RCPT only for provisioned
 * mailboxes (550 5.1.1), refuses relaying (550 5.7.1), refuses messages past
 * MAILWARD_MAX_MESSAGE_BYTES (552 5.3.4), limits clients (421 4.7.0) and the
 * rate of messages per client address (451 4.7.1), answers 451 4.3.0 when the
 * store cannot take the message, and says 250 only after the commit.
 * Logs carry session ids, codes and sizes, never addresses or content.
 */
export const createSmtpListener = ({ receiver, config, tls, logger }: Deps) => {
  const perIp = new Map<string, number>();
  const sessions = new Set<string>();
  const rate = new Map<string, { window: number; count: number }>();
  const limits = config.inbound;

  /** Fixed one-minute windows per client address. */
  const allow = (ip: string) => {
    if (limits.ratePerMinute === 0) return true;
    const window = Math.floor(Date.now() / 60_000);
    const r = rate.get(ip);
    if (!r || r.window !== window) {
      if (rate.size > 100_000) rate.clear();
      rate.set(ip, { window, count: 1 });
      return true;
    }
    r.count++;
    return r.count <= limits.ratePerMinute;
  };

  const server = new SMTPServer({
    secure: false,
    key: tls.key,
    cert: tls.cert,
    name: limits.hostname ?? os.hostname(),
    banner: 'Mailward ESMTP',
    size: config.smtp.maxMessageBytes,
    // No submission here: this listener receives mail for local mailboxes only (never relays).
    disabledCommands: ['AUTH'],
    maxClients: limits.maxClients,
    maxRecipients: limits.maxRecipients,
    disableReverseLookup: true,
    logger: false,
    socketTimeout: 60_000,
    closeTimeout: 10_000,
    onConnect(session, callback) {
      const ip = clientIp(session);
      const n = (perIp.get(ip) ?? 0) + 1;
      if (n > limits.maxClientsPerIp) return callback(reply(421, '4.7.0 Too many connections from your address, try again later'));
      perIp.set(ip, n);
      sessions.add(session.id);
      callback();
    },
    onClose(session) {
      if (!sessions.delete(session.id)) return;
      const ip = clientIp(session);
      const n = (perIp.get(ip) ?? 1) - 1;
      if (n <= 0) perIp.delete(ip);
      else perIp.set(ip, n);
    },
    onMailFrom(_address, session, callback) {
      if (limits.requireTls && !session.secure) return callback(reply(530, '5.7.0 Must issue a STARTTLS command first'));
      if (!allow(clientIp(session))) return callback(reply(451, '4.7.1 Too many messages from your address, try again later'));
      callback();
    },
    onRcptTo(address, _session, callback) {
      receiver.checkRecipient(address.address).then(
        (r) => {
          if (r.ok) return callback();
          if (r.reason === 'relay_denied') return callback(reply(550, '5.7.1 Relaying denied'));
          callback(reply(550, '5.1.1 No such mailbox here'));
        },
        () => callback(reply(451, '4.3.0 Temporary failure, try again later')),
      );
    },
    onData(stream: SMTPServerDataStream, session, callback) {
      const chunks: Buffer[] = [];
      let done = false;
      const finish = (err: Error | null, message?: string) => {
        if (done) return;
        done = true;
        callback(err, message);
      };
      stream.on('data', (c: Buffer) => {
        // Past the limit the rest is read and dropped: the answer is 552 either way.
        if (!stream.sizeExceeded) chunks.push(c);
      });
      stream.on('error', () => finish(reply(451, '4.3.0 Temporary failure, try again later')));
      stream.on('end', () => {
        if (stream.sizeExceeded) {
          logger.info({ smtp: session.id, bytes: stream.byteLength }, 'inbound message refused: too large');
          return finish(reply(552, `5.3.4 Message exceeds the maximum size of ${config.smtp.maxMessageBytes} bytes`));
        }
        const raw = Buffer.concat(chunks);
        const env = {
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          clientIp: clientIp(session),
          helo: typeof session.hostNameAppearsAs === 'string' ? session.hostNameAppearsAs : '',
          tls: !!session.secure,
        };
        receiver.receive(env, raw).then(
          (r) => {
            logger.info(
              { smtp: session.id, bytes: raw.length, stored: r.stored.length, duplicates: r.duplicates },
              'inbound message stored',
            );
            finish(null, `2.0.0 Ok: stored${r.stored[0] ? ` as ${r.stored[0].id}` : ''}`);
          },
          (e: unknown) => {
            if (isAppError(e) && e.status === 550) return finish(reply(550, '5.1.1 No valid recipients'));
            logger.warn(
              { smtp: session.id, code: isAppError(e) ? e.code : 'internal', err: { type: (e as Error)?.name } },
              'inbound message not stored; sender asked to retry',
            );
            finish(reply(451, '4.3.0 Temporary failure, try again later'));
          },
        );
      });
    },
  });
  // A client's broken connection or bad TLS handshake is its problem, never a crash.
  server.on('error', (e: Error & { code?: string }) => logger.debug({ err: { type: e?.name, code: e?.code } }, 'smtp connection error'));

  let port = 0;
  return {
    /** Starts listening; resolves with the bound port (0 picks a free one). */
    listen: (p = config.smtp.port, host = config.smtp.host) =>
      new Promise<number>((resolve, reject) => {
        server.server.once('error', reject);
        server.listen(p, host, () => {
          server.server.off('error', reject);
          port = (server.server.address() as { port: number }).port;
          resolve(port);
        });
      }),
    /** Stops accepting; sessions in flight get up to 10 s to finish (their messages commit or get 421). */
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    port: () => port,
  };
};

export type SmtpListener = ReturnType<typeof createSmtpListener>;
