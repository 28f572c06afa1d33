import type { AuditLog } from '../audit/audit-log.js';
import type { AuditService } from '../audit/audit-service.js';
import { leafHash } from '../audit/merkle.js';
import type { Guard } from '../identity/guard.js';
import type { RequestContext } from '../identity/principal.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import { notFound } from '../kernel/errors.js';
import { deliveredTo } from '../mail/messages-repo.js';
import { macsFor } from '../mail/recipient-index.js';
import { contactHash, normaliseAddress } from '../phi/consent-service.js';
import type { Executor } from '../store/db.js';
import type { StoredPhiFinding } from '../store/records.js';

/** Who may run the privacy officer's tools; anyone else is told the route does not exist (CONTRACT.md: 404, never 403). */
const OFFICERS = ['privacy_officer', 'admin'] as const;

export const requireOfficer = (ctx: RequestContext) => {
  const p = ctx.principal;
  if (p.type !== 'human' || !OFFICERS.some((r) => p.roles.includes(r))) throw notFound('route');
};

export type DisclosureQuery = { contact: string; since?: string; until?: string };

export type Disclosure = {
  email_id: string;
  at: string;
  recipient: string;
  recipient_role: string;
  phi_types: string[];
  category: string | null;
  agent: { id: string; name: string } | null;
  chain: { type: string; id: string; name: string }[];
  approved_by: { id: string; name: string | null } | null;
  /** 42 CFR 2.32 / 2.24: the Part 2 consents that authorised the disclosure (ids), from the submission's audit event. */
  part2_consents: string[];
  proof: {
    seq: number;
    leaf_index: number;
    tree_size: number;
    event_hash: string;
    leaf_hash: string;
    audit_path: string[];
    root_hash: string;
  } | null;
};

type Deps = { audit: AuditService; auditLog: AuditLog; guard: Guard; ring: KeyRing };

const phiTypesOf = (findings: readonly StoredPhiFinding[]): string[] => [...new Set(findings.map((f) => f.type).filter(Boolean))].sort();

const part2Of = (details: Record<string, unknown> | undefined): string[] => {
  const p2 = details?.part2 as { consents?: unknown } | undefined;
  return Array.isArray(p2?.consents)
    ? p2.consents.map((c) => (typeof c === 'string' ? c : String((c as { id?: unknown }).id ?? ''))).filter(Boolean)
    : [];
};

/**
 * Accounting of disclosures (45 CFR 164.528(b)): every outbound message delivered (accepted by the relay or the
 * recipient's MX) to one contact, found through the recipient index, with date, recipient, the PHI types found,
 * the category (purpose), the sending agent and its delegation chain, the approver, and the RFC 6962 inclusion
 * proof of its `email.delivered` audit event. The read itself is audited (`disclosures.read`, contact hash only).
 */
export const createDisclosures = ({ audit, auditLog, guard, ring }: Deps) => {
  const find = async (tx: Executor, orgId: string, q: DisclosureQuery) => {
    const macs = await macsFor(tx, ring, orgId, q.contact);
    if (macs.length === 0) return [];
    const rows = await deliveredTo(tx, orgId, macs, {
      since: q.since ? new Date(q.since).toISOString() : undefined,
      until: q.until ? new Date(q.until).toISOString() : undefined,
    });
    const out: (Disclosure & { delivered_seq: number | null })[] = [];
    const seen = new Set<string>();
    for (const r of rows) {
      if (seen.has(r.email_id)) continue;
      seen.add(r.email_id);
      const events = await audit.list({ orgId, targetId: r.email_id, limit: 100 }, tx);
      const submitted = events.find((e) => e.action === 'email.submitted');
      const delivered = events.find((e) => e.action === 'email.delivered');
      out.push({
        email_id: r.email_id,
        at: r.delivered_at!,
        recipient: normaliseAddress(q.contact),
        recipient_role: r.role,
        phi_types: phiTypesOf(r.phi_findings),
        category: r.category,
        agent: r.agent_id ? { id: r.agent_id, name: r.agent_name ?? '' } : null,
        chain: (submitted?.delegation_chain ?? []).map((c) => ({ type: c.type, id: c.id, name: c.name })),
        approved_by: r.decided_by ? { id: r.decided_by, name: r.approver_name ?? null } : null,
        part2_consents: part2Of(submitted?.details),
        proof: null,
        delivered_seq: delivered?.seq ?? null,
      });
    }
    return out;
  };

  /** The report. Throws 404 to anyone but a privacy officer or admin. */
  const report = async (ctx: RequestContext, q: DisclosureQuery): Promise<{ contact_hash: string; disclosures: Disclosure[] }> => {
    const target = { type: 'contact', id: contactHash(q.contact) };
    // The deliveries' audit events are read by seq: wait for their integration first (integrator.ts).
    await audit.sync();
    const found = await guard.change(ctx, 'disclosures.read', target, async (tx) => {
      requireOfficer(ctx);
      const list = await find(tx, ctx.principal.orgId, q);
      await guard.recordIn(tx, ctx, 'disclosures.read', target, {
        since: q.since ?? null,
        until: q.until ?? null,
        count: list.length,
      });
      return list;
    });
    // After the commit: the current checkpoint is signed now if needed (a write SQLite cannot nest in the read's transaction).
    const cp = found.some((d) => d.delivered_seq !== null) ? await auditLog.checkpoints.current() : null;
    const disclosures: Disclosure[] = [];
    for (const { delivered_seq: seq, ...d } of found) {
      if (seq === null || !cp || seq > cp.tree_size) {
        disclosures.push(d);
        continue;
      }
      const event = await audit.get(seq, ctx.principal.orgId);
      const path = await auditLog.tree.inclusionProof(seq - 1, cp.tree_size);
      disclosures.push({
        ...d,
        proof: {
          seq,
          leaf_index: seq - 1,
          tree_size: cp.tree_size,
          event_hash: event!.hash,
          leaf_hash: leafHash(Buffer.from(event!.hash, 'hex')).toString('hex'),
          audit_path: path.map((b) => b.toString('hex')),
          root_hash: cp.root_hash,
        },
      });
    }
    return { contact_hash: target.id, disclosures };
  };

  return { report };
};

export type Disclosures = ReturnType<typeof createDisclosures>;

const csvCell = (v: unknown) => {
  const s = v === null || v === undefined ? '' : String(v);
  // RFC 4180 quoting; a leading =, +, - or @ is prefixed so a spreadsheet does not run it as a formula.
  const safe = /^[=+\-@]/.test(s) ? `'${s}` : s;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
};

/** The report as CSV (RFC 4180), one line per disclosure. */
export const disclosuresCsv = (ds: Disclosure[]) =>
  [
    'email_id,at,recipient,phi_types,category,agent,chain,approved_by,audit_seq,tree_size,root_hash',
    ...ds.map((d) =>
      [
        d.email_id,
        d.at,
        d.recipient,
        d.phi_types.join(' '),
        d.category,
        d.agent?.name ?? '',
        d.chain.map((c) => `${c.type}:${c.name}`).join(' > '),
        d.approved_by?.name ?? d.approved_by?.id ?? '',
        d.proof?.seq ?? '',
        d.proof?.tree_size ?? '',
        d.proof?.root_hash ?? '',
      ]
        .map(csvCell)
        .join(','),
    ),
  ].join('\r\n') + '\r\n';
