import os from 'node:os';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { isAppError } from '../kernel/errors.js';
import type { Logger } from '../kernel/log.js';
import { type InboundVerdict, type MetricsSink, noopMetrics } from '../kernel/metrics.js';
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
  metrics?: Pick<MetricsSink, 'inboundSession' | 'inboundMessage'>;
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
export const createSmtpListener = ({ receiver, config, tls, logger, metrics = noopMetrics }: Deps) => {
  const perIp = new Map<string, number>();
  // Per open session: what its transactions came to, for the one log line and the session metric at its end.
  type SessionTally = { started: number; stored: number; refused: number; last: InboundVerdict | null };
  const sessions = new Map<string, SessionTally>();
  /** Counts one transaction's (or refused recipient's) verdict against its session. */
  const verdict = (sessionId: string, v: InboundVerdict) => {
    metrics.inboundMessage(v);
    const t = sessions.get(sessionId);
    if (!t) return;
    if (v === 'accepted') t.stored++;
    else t.refused++;
    t.last = v;
  };
  /** Refuses with `code` and counts it. */
  const refuse = (sessionId: string, code: InboundVerdict & `${number}`, text: string) => {
    verdict(sessionId, code);
    return reply(Number(code), text);
  };
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
    // Enforced in onRcptTo (452 4.5.3, counted in the metrics); smtp-server's own check stays one above as a backstop.
    maxRecipients: limits.maxRecipients + 1,
    disableReverseLookup: true,
    logger: false,
    socketTimeout: 60_000,
    closeTimeout: 10_000,
    onConnect(session, callback) {
      const ip = clientIp(session);
      const n = (perIp.get(ip) ?? 0) + 1;
      if (n > limits.maxClientsPerIp) {
        metrics.inboundSession('421');
        logger.info({ smtp: { session: session.id, tls: false, stored: 0, refused: 1, verdict: '421' } }, 'inbound session refused');
        return callback(reply(421, '4.7.0 Too many connections from your address, try again later'));
      }
      perIp.set(ip, n);
      sessions.set(session.id, { started: Date.now(), stored: 0, refused: 0, last: null });
      callback();
    },
    onClose(session) {
      const t = sessions.get(session.id);
      if (!t) return;
      sessions.delete(session.id);
      // One line per session outcome (like Postfix's disconnect line): counts and codes, never addresses or content.
      const outcome: InboundVerdict = t.stored > 0 ? 'accepted' : (t.last ?? 'none');
      metrics.inboundSession(outcome);
      // smtp-server keeps the negotiated cipher (tls.TLSSocket#getCipher) on the session after STARTTLS.
      const cipher = (session as { tlsOptions?: { name?: string; version?: string } | false }).tlsOptions || null;
      logger.info(
        {
          smtp: {
            session: session.id,
            tls: !!session.secure,
            tls_version: cipher?.version ?? null,
            cipher: cipher?.name ?? null,
            stored: t.stored,
            refused: t.refused,
            verdict: outcome,
            duration_seconds: (Date.now() - t.started) / 1000,
          },
        },
        'inbound session closed',
      );
      const ip = clientIp(session);
      const n = (perIp.get(ip) ?? 1) - 1;
      if (n <= 0) perIp.delete(ip);
      else perIp.set(ip, n);
    },
    onMailFrom(_address, session, callback) {
      if (limits.requireTls && !session.secure) return callback(refuse(session.id, '530', '5.7.0 Must issue a STARTTLS command first'));
      if (!allow(clientIp(session)))
        return callback(refuse(session.id, '451', '4.7.1 Too many messages from your address, try again later'));
      callback();
    },
    onRcptTo(address, session, callback) {
      const again = session.envelope.rcptTo.some((r) => r.address.toLowerCase() === address.address.toLowerCase());
      // RFC 5321 4.5.3.1.8: too many recipients is 452, and the client sends the rest in another transaction.
      if (!again && session.envelope.rcptTo.length >= limits.maxRecipients)
        return callback(refuse(session.id, '452', '4.5.3 Too many recipients'));
      receiver.checkRecipient(address.address).then(
        (r) => {
          if (r.ok) return callback();
          if (r.reason === 'relay_denied') return callback(refuse(session.id, '550', '5.7.1 Relaying denied'));
          callback(refuse(session.id, '550', '5.1.1 No such mailbox here'));
        },
        () => callback(refuse(session.id, '451', '4.3.0 Temporary failure, try again later')),
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
      stream.on('error', () => finish(refuse(session.id, '451', '4.3.0 Temporary failure, try again later')));
      stream.on('end', () => {
        if (stream.sizeExceeded) {
          logger.info({ smtp: session.id, bytes: stream.byteLength }, 'inbound message refused: too large');
          return finish(refuse(session.id, '552', `5.3.4 Message exceeds the maximum size of ${config.smtp.maxMessageBytes} bytes`));
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
            verdict(session.id, 'accepted');
            finish(null, `2.0.0 Ok: stored${r.stored[0] ? ` as ${r.stored[0].id}` : ''}`);
          },
          (e: unknown) => {
            if (isAppError(e) && e.status === 550) return finish(refuse(session.id, '550', '5.1.1 No valid recipients'));
            logger.warn(
              { smtp: session.id, code: isAppError(e) ? e.code : 'internal', err: { type: (e as Error)?.name } },
              'inbound message not stored; sender asked to retry',
            );
            finish(refuse(session.id, '451', '4.3.0 Temporary failure, try again later'));
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
