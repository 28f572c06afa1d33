import type { MailConfig } from './mail-config.js';
import fs from 'node:fs';
import { isIP } from 'node:net';
import { classifySmtpError, type DeliveryOutcome, parseSmtpReply } from './bounce-rules.js';
import { DnsLookupError, type MailResolver } from './dns-overrides.js';
import { createSmtpPool, type NegotiatedTls, type SmtpPool } from './smtp-pool.js';

export type SmtpTarget = { host: string; port: number; secure: boolean };

/** What an attempt says of transport security: the policy it ran under, and what the handshake negotiated. */
export type AttemptTls = { tls: string; tls_version?: string; tls_cipher?: string };

/**
 * Sends raw signed bytes over nodemailer's SMTP connection, pooled per host
 * (smtp-pool.ts; nothing re-encodes or re-signs them). STARTTLS is required and the
 * certificate verified (45 CFR 164.312(e)(1)) unless the operator turned the
 * requirement off (then plain SMTP, for a loopback test relay only).
 */
export const createSmtpSender = (config: Pick<MailConfig, 'smtp' | 'delivery'>, resolver: MailResolver, heloName: () => string) => {
  const ca = config.delivery.tlsCaFile ? fs.readFileSync(config.delivery.tlsCaFile) : undefined;

  const relay = config.smtp.relay;
  const relayTarget = (): SmtpTarget => {
    const u = new URL(relay!);
    const secure = u.protocol === 'smtps:';
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || (secure ? 465 : 587)), secure };
  };

  /** The hosts of a route, or the permanent outcome when the domain has none (RFC 5321 5.1, RFC 7505). */
  const targetsFor = async (route: string): Promise<SmtpTarget[] | DeliveryOutcome> => {
    if (route === 'relay') {
      if (relay) return [relayTarget()];
      return { kind: 'defer', code: null, category: 'no_route' };
    }
    const found = await resolver.mailHosts(route);
    if (found.kind === 'none') return { kind: 'bounce', code: null, category: found.reason };
    return found.hosts.map((r) => ({ host: r.exchange, port: config.delivery.mxPort, secure: false }));
  };

  // One pool per host: connections (and their TLS sessions) are reused across messages.
  const pools = new Map<string, SmtpPool>();
  const poolFor = (t: SmtpTarget) => {
    const k = `${t.host}|${t.port}|${t.secure}`;
    let p = pools.get(k);
    if (!p) {
      const requireTls = config.delivery.requireTls;
      p = createSmtpPool({
        maxConnections: Math.max(1, Math.min(config.delivery.concurrency, 16)),
        maxMessages: 100,
        host: t.host,
        port: t.port,
        secure: t.secure,
        requireTLS: requireTls && !t.secure,
        ignoreTLS: !requireTls && !t.secure,
        name: heloName(),
        // RFC 6066 3: SNI carries host names only, never IP literals.
        tls: { rejectUnauthorized: true, ...(isIP(t.host) ? {} : { servername: t.host }), ...(ca ? { ca } : {}) },
        connectionTimeout: 30_000,
        greetingTimeout: 30_000,
        socketTimeout: 120_000,
      });
      pools.set(k, p);
    }
    return p;
  };

  // The policy the attempt ran under (STARTTLS required and the certificate verified, or not), and, once a session
  // is up, the protocol version and cipher suite its handshake negotiated (for the log line and the attempt event).
  const policyOf = (t: SmtpTarget) => (t.secure ? 'implicit-tls-verified' : config.delivery.requireTls ? 'starttls-verified' : 'none');
  const tlsOf = (t: SmtpTarget, negotiated: NegotiatedTls): AttemptTls => ({
    tls: policyOf(t),
    ...(negotiated ? { tls_version: negotiated.version, tls_cipher: negotiated.cipher } : {}),
  });

  const sendVia = async (
    t: SmtpTarget,
    envelope: { from: string; to: string[] },
    raw: Buffer,
  ): Promise<DeliveryOutcome & { rejected?: number; host: string } & Partial<AttemptTls>> => {
    const host = `${t.host}:${t.port}`;
    try {
      const info = await poolFor(t).send(envelope, raw);
      const code = Number(/^(\d{3})/.exec(info.response)?.[1] ?? 250);
      // The relay's or MX's reply (scrubbed) is the delivery proof a breach notice needs (45 CFR 164.414 burden of proof).
      const smtp_reply = parseSmtpReply(code, info.response);
      return { kind: 'accepted', code, smtp_reply, rejected: info.rejected, host, ...tlsOf(t, info.tls) };
    } catch (e) {
      const out = classifySmtpError(e as { responseCode?: number; response?: string; code?: string });
      const negotiated = (e as { negotiatedTls?: NegotiatedTls }).negotiatedTls ?? null;
      return { ...out, host, ...(out.code !== null ? tlsOf(t, negotiated) : {}) };
    }
  };

  /** Closes every pooled connection (worker stop). */
  const close = () => {
    for (const p of pools.values()) p.close();
    pools.clear();
  };

  /**
   * Tries each host of the route in preference order (RFC 5321 5.1) until one
   * gives an SMTP answer. `route` is `relay` or a recipient domain; the caller
   * decides it at each attempt (see `relayConfigured`).
   */
  const deliver = async (
    route: string,
    envelope: { from: string; to: string[] },
    raw: Buffer,
  ): Promise<DeliveryOutcome & { host?: string } & Partial<AttemptTls>> => {
    let targets: SmtpTarget[] | DeliveryOutcome;
    try {
      targets = await targetsFor(route);
    } catch (e) {
      const code = e instanceof DnsLookupError ? e.code : 'EUNKNOWN';
      // Said the way an operator reads it in a Postfix log: `ENOTFOUND example.org MX`.
      return { kind: 'defer', code: null, category: 'dns', error: { code, stage: 'DNS', message: `${code} ${route} MX` } };
    }
    if (!Array.isArray(targets)) return targets;
    let last: DeliveryOutcome & { host?: string } & Partial<AttemptTls> = { kind: 'defer', code: null, category: 'no_route' };
    for (const t of targets) {
      last = await sendVia(t, envelope, raw);
      if (last.kind !== 'defer' || last.code !== null) return last;
    }
    return last;
  };

  /** Whether MAILWARD_SMTP_RELAY is set now: every attempt then goes through it, whatever route the job was queued with. */
  const relayConfigured = relay !== undefined && relay !== '';

  return { deliver, close, relayConfigured };
};

export type SmtpSender = ReturnType<typeof createSmtpSender>;
