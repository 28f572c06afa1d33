import type { TLSSocket } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

/** The TLS a connection negotiated (node:tls getProtocol / getCipher), or null for plain SMTP. */
export type NegotiatedTls = { version: string; cipher: string } | null;

export type PooledSendInfo = { response: string; rejected: number; tls: NegotiatedTls };

type Conn = { c: SMTPConnection; messages: number; tls: NegotiatedTls; idleTimer?: NodeJS.Timeout; dead: boolean };

export type SmtpPoolOptions = SMTPConnection.Options & { maxConnections: number; maxMessages: number; idleMs?: number };

const RETRYABLE_ON_REUSE = new Set(['ECONNECTION', 'ESOCKET', 'ETIMEDOUT']);

/**
 * A small connection pool for one SMTP host, on nodemailer's own `SMTPConnection` (the protocol, STARTTLS, dot-stuffing
 * and timeouts stay nodemailer's). Written here rather than using nodemailer's `pool: true` transport because that pool
 * never says which connection carried a message, so the negotiated TLS version and cipher (RFC 8446 / RFC 5246) could
 * not be logged per delivery. Like nodemailer's pool: up to `maxConnections` sessions, each reused for up to
 * `maxMessages` messages, idle ones closed after `idleMs`; a reused session the server dropped while idle is retried
 * once on a fresh one.
 */
export const createSmtpPool = (opts: SmtpPoolOptions) => {
  const { maxConnections, maxMessages, idleMs = 30_000, ...connOpts } = opts;
  const idle: Conn[] = [];
  const waiters: ((c: Conn | null) => void)[] = [];
  let open = 0;
  let closed = false;

  /** Takes a connection out of the pool; a waiter may then open its own. */
  const retire = (k: Conn) => {
    if (k.dead) return false;
    k.dead = true;
    if (k.idleTimer) clearTimeout(k.idleTimer);
    const i = idle.indexOf(k);
    if (i >= 0) idle.splice(i, 1);
    open--;
    const w = waiters.shift();
    if (w) w(null);
    return true;
  };
  /** Ends a session politely (QUIT) or at once (a broken one). */
  const quit = (k: Conn) => retire(k) && k.c.quit();
  const drop = (k: Conn) => retire(k) && k.c.close();

  const connect = () =>
    new Promise<Conn>((resolve, reject) => {
      const c = new SMTPConnection(connOpts);
      const k: Conn = { c, messages: 0, tls: null, dead: false };
      let settled = false;
      c.on('error', (e: Error) => {
        if (!settled) {
          settled = true;
          reject(e);
        }
        drop(k);
      });
      c.once('end', () => drop(k));
      c.connect((err) => {
        if (settled) return;
        settled = true;
        if (err) {
          drop(k);
          return reject(err);
        }
        // nodemailer keeps the session's socket in `_socket` (typed in its .d.ts); after STARTTLS or on implicit TLS it
        // is the TLSSocket, whose getProtocol/getCipher say what the handshake agreed.
        const s = (c as unknown as { _socket?: Partial<TLSSocket> })._socket;
        if (c.secure && s && typeof s.getProtocol === 'function' && typeof s.getCipher === 'function') {
          const version = s.getProtocol();
          const cipher = s.getCipher()?.standardName ?? s.getCipher()?.name;
          k.tls = version && cipher ? { version, cipher } : null;
        }
        resolve(k);
      });
    });

  /** An idle connection, a new one if a slot is free, or the next one released. */
  const acquire = async (): Promise<{ k: Conn; reused: boolean }> => {
    for (;;) {
      if (closed) throw Object.assign(new Error('Connection pool was closed'), { code: 'ECONNECTION' });
      const k = idle.pop();
      if (k) {
        if (k.idleTimer) clearTimeout(k.idleTimer);
        return { k, reused: true };
      }
      if (open < maxConnections) {
        open++;
        // On failure connect() has already given the slot back (drop).
        return { k: await connect(), reused: false };
      }
      const got = await new Promise<Conn | null>((r) => waiters.push(r));
      if (got) return { k: got, reused: true };
    }
  };

  const release = (k: Conn) => {
    if (k.dead) return;
    if (closed || k.messages >= maxMessages) {
      quit(k);
      return;
    }
    const w = waiters.shift();
    if (w) return w(k);
    k.idleTimer = setTimeout(() => quit(k), idleMs);
    k.idleTimer.unref();
    idle.push(k);
  };

  const sendOn = (k: Conn, envelope: { from: string; to: string[] }, raw: Buffer) =>
    new Promise<PooledSendInfo>((resolve, reject) => {
      k.c.send({ ...envelope, size: raw.length } as SMTPConnection.Envelope, raw, (err, info) => {
        k.messages++;
        // The session's TLS rides on the error too: a 4xx/5xx reply was also given over it.
        if (err) return reject(Object.assign(err, { negotiatedTls: k.tls }));
        resolve({ response: String(info.response ?? ''), rejected: (info.rejected ?? []).length, tls: k.tls });
      });
    });

  /**
   * Sends one message. Resolves with the server's reply and the connection's TLS; rejects with nodemailer's error
   * (`responseCode`, `response`, `code`), after which that connection is closed rather than reused.
   */
  const send = async (envelope: { from: string; to: string[] }, raw: Buffer): Promise<PooledSendInfo> => {
    for (let attempt = 0; ; attempt++) {
      const { k, reused } = await acquire();
      try {
        const info = await sendOn(k, envelope, raw);
        release(k);
        return info;
      } catch (e) {
        drop(k);
        const err = e as { code?: string; responseCode?: number };
        // The server closed a session that sat idle: nothing was said about this message, so try a fresh one once.
        if (reused && attempt === 0 && err.responseCode === undefined && RETRYABLE_ON_REUSE.has(String(err.code))) continue;
        throw e;
      }
    }
  };

  const close = () => {
    closed = true;
    for (const k of [...idle]) quit(k);
    for (const w of waiters.splice(0)) w(null);
  };

  return { send, close };
};

export type SmtpPool = ReturnType<typeof createSmtpPool>;
