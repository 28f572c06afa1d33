import type { MailConfig } from './mail-config.js';
import fs from 'node:fs';
import { isIP } from 'node:net';
import { createTransport, type Transporter } from 'nodemailer';
import { classifySmtpError, type DeliveryOutcome, parseSmtpReply } from './bounce-rules.js';
import { DnsLookupError, type MailResolver } from './dns-overrides.js';

export type SmtpTarget = { host: string; port: number; secure: boolean };

/**
 * Sends raw signed bytes with nodemailer's SMTP transport (`raw` + `envelope`:
 * nothing re-encodes or re-signs them). STARTTLS is required and the
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

  // One pooled transport per host: connections (and their TLS sessions) are reused across messages.
  const pools = new Map<string, Transporter>();
  const transportFor = (t: SmtpTarget) => {
    const k = `${t.host}|${t.port}|${t.secure}`;
    let tr = pools.get(k);
    if (!tr) {
      const requireTls = config.delivery.requireTls;
      tr = createTransport({
        pool: true,
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
        disableFileAccess: true,
        disableUrlAccess: true,
      });
      // Pool-level errors also fail the pending sendMail calls, which classify them; never crash the process.
      tr.on('error', () => {});
      pools.set(k, tr);
    }
    return tr;
  };

  // What the log line and the attempt event say of transport security: nodemailer's pool does not expose the
  // negotiated cipher, so this is the policy the attempt ran under (STARTTLS required and the certificate verified, or not).
  const tlsOf = (t: SmtpTarget) => (t.secure ? 'implicit-tls-verified' : config.delivery.requireTls ? 'starttls-verified' : 'none');

  const sendVia = async (
    t: SmtpTarget,
    envelope: { from: string; to: string[] },
    raw: Buffer,
  ): Promise<DeliveryOutcome & { rejected?: number; host: string; tls?: string }> => {
    const host = `${t.host}:${t.port}`;
    try {
      const info = await transportFor(t).sendMail({ envelope, raw });
      const code = Number(/^(\d{3})/.exec(String(info.response ?? ''))?.[1] ?? 250);
      // The relay's or MX's reply (scrubbed) is the delivery proof a breach notice needs (45 CFR 164.414 burden of proof).
      const smtp_reply = parseSmtpReply(code, String(info.response ?? ''));
      return { kind: 'accepted', code, smtp_reply, rejected: (info.rejected ?? []).length, host, tls: tlsOf(t) };
    } catch (e) {
      const out = classifySmtpError(e as { responseCode?: number; response?: string; code?: string });
      return { ...out, host, ...(out.code !== null ? { tls: tlsOf(t) } : {}) };
    }
  };

  /** Closes every pooled connection (worker stop). */
  const close = () => {
    for (const tr of pools.values()) tr.close();
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
  ): Promise<DeliveryOutcome & { host?: string; tls?: string }> => {
    let targets: SmtpTarget[] | DeliveryOutcome;
    try {
      targets = await targetsFor(route);
    } catch (e) {
      const code = e instanceof DnsLookupError ? e.code : 'EUNKNOWN';
      // Said the way an operator reads it in a Postfix log: `ENOTFOUND example.org MX`.
      return { kind: 'defer', code: null, category: 'dns', error: { code, stage: 'DNS', message: `${code} ${route} MX` } };
    }
    if (!Array.isArray(targets)) return targets;
    let last: DeliveryOutcome & { host?: string; tls?: string } = { kind: 'defer', code: null, category: 'no_route' };
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
