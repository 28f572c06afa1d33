import type { Guard } from '../identity/guard.js';
import { type RequestContext, requireAnyRole } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { AppError, conflict, notFound, unprocessable } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { Executor } from '../store/db.js';
import type { Part2ConsentsTable } from '../store/schema.js';
import { contactHash, normaliseAddress } from './consent-service.js';

/**
 * 42 CFR 2.31: a Part 2 record may be disclosed only with the patient's written consent naming the recipient (an
 * individual, or an entity) and the purpose. Here a consent names a recipient address (kept as its contact hash)
 * or a recipient organisation (its mail domain), a purpose, and optionally an expiry; revoking it stops new
 * disclosures at once (2.31(a)(6)). The send path refuses Part 2 content to a recipient no live consent covers.
 */
export type GrantPart2 = { recipient_address?: string; recipient_domain?: string; purpose: string; source: string; expires_at?: string };

const view = (r: Part2ConsentsTable) => ({
  id: r.id,
  recipient: r.recipient_kind === 'domain' ? { domain: r.recipient_value } : { contact_hash: r.recipient_value },
  purpose: r.purpose,
  source: r.source,
  granted_by: r.granted_by,
  created_at: r.created_at,
  expires_at: r.expires_at,
  revoked_at: r.revoked_at,
  revoked_by: r.revoked_by,
});

/** The error for Part 2 content to a recipient without consent; names no address. */
export const noPart2ConsentError = (recipientIndex: number) =>
  new AppError(
    'no_part2_consent',
    422,
    'The message holds 42 CFR Part 2 information and a recipient has no Part 2 consent naming them (or their organisation) and a purpose; nothing was sent.',
    { extra: { recipient_index: recipientIndex } },
  );

/**
 * Which live consents cover each recipient (to, cc, bcc order); `missing` is the index of the first uncovered
 * recipient or -1. Read in the sender's transaction, so a revocation committed before it counts.
 */
export const part2Coverage = async (ex: Executor, orgId: string, recipients: string[], at: string) => {
  const consents: string[] = [];
  for (const [i, address] of recipients.entries()) {
    const a = normaliseAddress(address);
    const domain = a.slice(a.lastIndexOf('@') + 1);
    const hit = await ex
      .selectFrom('part2_consents')
      .select(['id', 'purpose'])
      .where('org_id', '=', orgId)
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)]))
      .where((eb) =>
        eb.or([
          eb.and([eb('recipient_kind', '=', 'address'), eb('recipient_value', '=', contactHash(a))]),
          eb.and([eb('recipient_kind', '=', 'domain'), eb('recipient_value', '=', domain)]),
        ]),
      )
      .orderBy('created_at')
      .executeTakeFirst();
    if (!hit) return { missing: i, consents };
    consents.push(hit.id);
  }
  return { missing: -1, consents };
};

export const createPart2Consents = ({ db, guard, clock }: { db: Executor; guard: Guard; clock: Clock }) => {
  const OFFICERS = ['admin', 'privacy_officer'] as const;

  /** Records a consent (admin, privacy officer). Exactly one of recipient_address or recipient_domain. Audited (hash or domain, purpose). */
  const grant = (ctx: RequestContext, body: GrantPart2) =>
    guard.change(ctx, 'part2.consent.granted', null, async (tx) => {
      requireAnyRole(ctx, [...OFFICERS]);
      if (!!body.recipient_address === !!body.recipient_domain)
        throw unprocessable('recipient_required', 'Give exactly one of recipient_address or recipient_domain.');
      const at = clock.now().toISOString();
      if (body.expires_at && new Date(body.expires_at).toISOString() <= at)
        throw unprocessable('expired', 'expires_at must be in the future.');
      const row: Part2ConsentsTable = {
        id: newId('part2Consent'),
        org_id: ctx.principal.orgId,
        recipient_kind: body.recipient_address ? 'address' : 'domain',
        recipient_value: body.recipient_address ? contactHash(body.recipient_address) : body.recipient_domain!.toLowerCase(),
        purpose: body.purpose,
        source: body.source,
        granted_by: ctx.principal.id,
        created_at: at,
        expires_at: body.expires_at ? new Date(body.expires_at).toISOString() : null,
        revoked_at: null,
        revoked_by: null,
      };
      await tx.insertInto('part2_consents').values(row).execute();
      await guard.recordIn(
        tx,
        ctx,
        'part2.consent.granted',
        { type: 'part2_consent', id: row.id },
        {
          recipient_kind: row.recipient_kind,
          recipient: row.recipient_value,
          purpose: row.purpose,
          expires_at: row.expires_at,
        },
      );
      return view(row);
    });

  const list = (ctx: RequestContext) =>
    guard.read(ctx, 'part2.consent.list', null, async () => {
      requireAnyRole(ctx, [...OFFICERS, 'auditor']);
      const rows = await db.selectFrom('part2_consents').selectAll().where('org_id', '=', ctx.principal.orgId).orderBy('id').execute();
      return rows.map(view);
    });

  /** Revokes a consent: no new Part 2 disclosure under it from this commit on. 409 already revoked. */
  const revoke = (ctx: RequestContext, id: string) =>
    guard.change(ctx, 'part2.consent.revoked', { type: 'part2_consent', id }, async (tx) => {
      requireAnyRole(ctx, [...OFFICERS]);
      const row = await tx
        .selectFrom('part2_consents')
        .selectAll()
        .where('id', '=', id)
        .where('org_id', '=', ctx.principal.orgId)
        .executeTakeFirst();
      if (!row) throw notFound('part2 consent');
      const at = clock.now().toISOString();
      const u = await tx
        .updateTable('part2_consents')
        .set({ revoked_at: at, revoked_by: ctx.principal.id })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(u.numUpdatedRows) !== 1) throw conflict('part2_consent_revoked', 'This consent was revoked already.');
      await guard.recordIn(tx, ctx, 'part2.consent.revoked', { type: 'part2_consent', id }, { recipient_kind: row.recipient_kind });
      return view({ ...row, revoked_at: at, revoked_by: ctx.principal.id });
    });

  /** The organisation's rule for a category a recipient's consent does not cover: hold (default) or refuse. */
  const policy = (ctx: RequestContext) =>
    guard.read(ctx, 'consent.policy.read', null, async () => {
      requireAnyRole(ctx, [...OFFICERS, 'auditor']);
      const org = await db
        .selectFrom('organizations')
        .select('consent_category_mismatch')
        .where('id', '=', ctx.principal.orgId)
        .executeTakeFirst();
      if (!org) throw notFound('organization');
      return { category_mismatch: org.consent_category_mismatch };
    });

  const setPolicy = (ctx: RequestContext, mismatch: 'hold' | 'refuse') =>
    guard.change(ctx, 'consent.policy.changed', { type: 'organization', id: ctx.principal.orgId }, async (tx) => {
      requireAnyRole(ctx, [...OFFICERS]);
      const before = await tx
        .selectFrom('organizations')
        .select('consent_category_mismatch')
        .where('id', '=', ctx.principal.orgId)
        .executeTakeFirst();
      if (!before) throw notFound('organization');
      await tx.updateTable('organizations').set({ consent_category_mismatch: mismatch }).where('id', '=', ctx.principal.orgId).execute();
      await guard.recordIn(
        tx,
        ctx,
        'consent.policy.changed',
        { type: 'organization', id: ctx.principal.orgId },
        {
          before: before.consent_category_mismatch,
          after: mismatch,
        },
      );
      return { category_mismatch: mismatch };
    });

  return { grant, list, revoke, policy, setPolicy };
};

export type Part2Consents = ReturnType<typeof createPart2Consents>;
