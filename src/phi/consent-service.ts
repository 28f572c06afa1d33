import { appendEvent } from '../events/events-log.js';
import type { Guard, Target } from '../identity/guard.js';
import { hasRole, hasScope, type RequestContext } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import { AppError, conflict, forbidden, unprocessable } from '../kernel/errors.js';
import type { Db, Executor } from '../store/db.js';
import { isUniqueViolation } from '../store/errors.js';
import type { ConsentOut, PutConsentBody } from './consent-schemas.js';

type Deps = { db: Db; guard: Guard; clock: Clock };

export type ConsentState = { status: 'granted' | 'refused' | 'unknown'; categories: string[] };

/** Lower case, trimmed: one patient, one row, whatever case the address was typed in. */
export const normaliseAddress = (address: string) => address.trim().toLowerCase();

/**
 * SHA-256 of the normalised address, hex, first 160 bits (40 characters, the
 * length audit target ids are filtered by): the key of the consent row and
 * the audit target id. No address is stored or logged; an auditor who knows
 * an address can still find its events by hashing it.
 */
export const contactHash = (address: string) => sha256Hex(normaliseAddress(address)).slice(0, 40);

const contactTarget = (address: string): Target => ({ type: 'contact', id: contactHash(address) });

/** Clock skew tolerated for a client-supplied recorded_at. */
const FUTURE_SKEW_MS = 5 * 60_000;

/**
 * What the send path does with a recipient's consent (CONTRACT.md, consent):
 * refused -> refuse the message (422 no_consent); unknown and the message
 * carries PHI -> hold it for review; granted for other categories than the
 * message's -> hold; otherwise send.
 */
export const consentGate = (consent: ConsentState, message: { hasPhi: boolean; category?: string | null }): 'send' | 'refuse' | 'hold' => {
  if (consent.status === 'refused') return 'refuse';
  if (consent.status === 'unknown') return message.hasPhi ? 'hold' : 'send';
  if (message.category && consent.categories.length > 0 && !consent.categories.includes(message.category)) return 'hold';
  return 'send';
};

/** The error for a refused recipient; names no address (the caller knows which recipient it sent). */
export const noConsentError = (recipientIndex?: number) =>
  new AppError('no_consent', 422, 'A recipient has refused electronic communication; nothing was sent.', {
    extra: recipientIndex === undefined ? undefined : { recipient_index: recipientIndex },
  });

/**
 * The error for approving a message whose category a recipient's consent does
 * not cover (CONTRACT.md, hold reason `consent_category`); names no address.
 */
export const consentCategoryError = (category: string, recipientIndex: number) =>
  new AppError(
    'consent_category',
    422,
    `A recipient's consent does not cover the category ${category}: change the category or the recipients, or reject the message.`,
    {
      extra: { category, recipient_index: recipientIndex },
    },
  );

/**
 * Patient consent to electronic communication, per organisation and contact
 * address. 45 CFR 164.522(b): patients may ask to be reached by other means;
 * the send path honours a refusal and holds PHI to contacts whose consent is unknown.
 */
export const createConsentService = ({ db, guard, clock }: Deps) => {
  const rowFor = (ex: Executor, orgId: string, hash: string) =>
    ex.selectFrom('contact_consents').selectAll().where('org_id', '=', orgId).where('address_hash', '=', hash).executeTakeFirst();

  const toOut = (email: string, row: Awaited<ReturnType<typeof rowFor>>): ConsentOut =>
    row
      ? {
          email: normaliseAddress(email),
          status: row.electronic === 1 ? 'granted' : 'refused',
          electronic: row.electronic === 1,
          categories: JSON.parse(row.categories) as string[],
          source: row.source,
          recorded_at: row.recorded_at,
          recorded_by: { type: row.recorded_by_type, id: row.recorded_by_id },
          version: Number(row.version),
          updated_at: row.updated_at,
        }
      : {
          email: normaliseAddress(email),
          status: 'unknown',
          electronic: null,
          categories: [],
          source: null,
          recorded_at: null,
          recorded_by: null,
          version: 0,
          updated_at: null,
        };

  /**
   * Who may write: humans with `admin` or `privacy_officer`. An agent with
   * `mail:send` may record a refusal the patient gave it ("stop emailing me"),
   * which only narrows what it may do, but never a grant: an agent must not be
   * able to widen its own permission to send PHI.
   */
  const checkWriter = (ctx: RequestContext, body: PutConsentBody) => {
    const p = ctx.principal;
    if (p.type === 'agent') {
      if (!hasScope(p, 'mail:send')) throw forbidden('scope_required', 'Recording consent needs an agent key with the mail:send scope.');
      if (body.electronic)
        throw forbidden(
          'consent_grant_requires_human',
          'Only an admin or privacy officer can record that a patient agreed to email; an agent may record a refusal.',
        );
      return;
    }
    if (!hasRole(p, 'admin') && !hasRole(p, 'privacy_officer')) {
      throw forbidden('role_required', 'Recording consent needs one of the roles: admin, privacy_officer.');
    }
  };

  /** Humans of the organisation (any role) and agents with `mail:send` may read. */
  const checkReader = (ctx: RequestContext) => {
    const p = ctx.principal;
    if (p.type === 'agent' && !hasScope(p, 'mail:send'))
      throw forbidden('scope_required', 'Reading consent needs an agent key with the mail:send scope.');
  };

  /**
   * Records (creates or replaces) the consent of `email` in the caller's
   * organisation. Throws 403 role_required / scope_required /
   * consent_grant_requires_human, 422 recorded_at_in_future /
   * categories_without_consent, 409 concurrent_write. Writes the row and the
   * audit event `consent.recorded` (target: the address hash; details without
   * the address) in one transaction.
   */
  const record = (ctx: RequestContext, email: string, body: PutConsentBody): Promise<ConsentOut> =>
    guard.change(ctx, 'consent.recorded', contactTarget(email), async (tx) => {
      checkWriter(ctx, body);
      const now = clock.now();
      const recordedAt = body.recorded_at ? new Date(body.recorded_at) : now;
      if (recordedAt.getTime() > now.getTime() + FUTURE_SKEW_MS)
        throw unprocessable('recorded_at_in_future', 'recorded_at must not be in the future.');
      if (!body.electronic && body.categories.length > 0) {
        throw unprocessable('categories_without_consent', 'A refusal covers every category: send categories [] with electronic false.');
      }
      const orgId = ctx.principal.orgId;
      const hash = contactHash(email);
      const prev = await rowFor(tx, orgId, hash);
      const categories = [...new Set(body.categories)].sort();
      const values = {
        electronic: body.electronic ? 1 : 0,
        categories: JSON.stringify(categories),
        source: body.source,
        recorded_at: recordedAt.toISOString(),
        recorded_by_type: ctx.principal.type,
        recorded_by_id: ctx.principal.id,
        version: prev ? Number(prev.version) + 1 : 1,
        updated_at: now.toISOString(),
      };
      try {
        if (prev) {
          const r = await tx
            .updateTable('contact_consents')
            .set(values)
            .where('org_id', '=', orgId)
            .where('address_hash', '=', hash)
            .where('version', '=', prev.version)
            .executeTakeFirst();
          if (Number(r.numUpdatedRows) !== 1) throw conflict('concurrent_write', 'The consent was changed concurrently; retry.');
        } else {
          await tx
            .insertInto('contact_consents')
            .values({ org_id: orgId, address_hash: hash, ...values })
            .execute();
        }
      } catch (e) {
        if (isUniqueViolation(e)) throw conflict('concurrent_write', 'The consent was recorded concurrently; retry.');
        throw e;
      }
      await guard.recordIn(tx, ctx, 'consent.recorded', contactTarget(email), {
        electronic: body.electronic,
        categories,
        source: body.source,
        recorded_at: values.recorded_at,
        version: values.version,
        previous: prev ? { electronic: prev.electronic === 1, categories: JSON.parse(prev.categories) } : null,
      });
      // The event log carries the address's hash, never the address (45 CFR 164.502(b), minimum necessary).
      await appendEvent(tx, {
        orgId,
        type: 'consent.changed',
        at: now.toISOString(),
        data: { contact_hash: hash, electronic: body.electronic, categories, version: values.version },
      });
      return toOut(email, { org_id: orgId, address_hash: hash, ...values });
    });

  /**
   * Reads the consent of `email` in the caller's organisation (`unknown` when
   * none was recorded). Throws 403 scope_required for agents without
   * mail:send. Writes the audit event `consent.read` (whether a person is a
   * patient who agreed to email is itself PHI, 45 CFR 164.312(b)).
   */
  const get = (ctx: RequestContext, email: string): Promise<ConsentOut> =>
    guard.change(ctx, 'consent.read', contactTarget(email), async (tx) => {
      checkReader(ctx);
      const row = await rowFor(tx, ctx.principal.orgId, contactHash(email));
      await guard.recordIn(tx, ctx, 'consent.read', contactTarget(email), {
        status: row ? (row.electronic === 1 ? 'granted' : 'refused') : 'unknown',
      });
      return toOut(email, row);
    });

  /**
   * For the send path: the consent state of `address` in `orgId`, read in
   * `ex` (pass the send transaction). No audit event of its own: the send's
   * events cover it. Combine with `consentGate`.
   */
  const consentFor = async (orgId: string, address: string, ex: Executor = db): Promise<ConsentState> => {
    const row = await rowFor(ex, orgId, contactHash(address));
    if (!row) return { status: 'unknown', categories: [] };
    return { status: row.electronic === 1 ? 'granted' : 'refused', categories: JSON.parse(row.categories) as string[] };
  };

  return { record, get, consentFor };
};

export type ConsentService = ReturnType<typeof createConsentService>;
