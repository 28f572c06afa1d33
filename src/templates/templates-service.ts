import { canonicalJson } from '../audit/canonical.js';
import type { Guard } from '../identity/guard.js';
import { hasScope, type RequestContext, requireAnyRole } from '../identity/principal.js';
import type { Clock } from '../kernel/clock.js';
import { sha256Hex } from '../kernel/crypto/hash.js';
import { conflict, forbidden, notFound } from '../kernel/errors.js';
import { newId } from '../kernel/ids.js';
import type { OutboundScreen } from '../phi/outbound-screen.js';
import type { Db, Executor } from '../store/db.js';
import { isUniqueViolation } from '../store/errors.js';
import type { TemplatesTable } from '../store/schema.js';
import { checkPlaceholders, placeholderValues, renderTemplate, SLOT_ALLOWED_PHI, validateSlots } from './template-render.js';
import type { TemplatesRepo, TemplateVersion } from './templates-repo.js';
import type { CreateTemplateInput, SlotDef, SlotValues, UpdateTemplateInput } from './templates-schemas.js';

type Deps = { db: Db; guard: Guard; clock: Clock; repo: TemplatesRepo; screen: Pick<OutboundScreen, 'scan'> };

/** 21 CFR 11.50(a)(3): the meaning of the signature, shown with it. */
const MEANING = 'approved as a template' as const;

const notApproved = () => conflict('template_not_approved', 'This template has no approved version yet; a reviewer must approve it first.');

/** A hold reason a template send adds (README "Templates and bulk sends"). */
export type TemplateReason = { code: 'template_slot_phi'; slot: string; types: string[] } | { code: 'template_phi'; types: string[] };

/** What the send path needs of a template send: the rendered content and the facts decideHold weighs. */
export type PreparedTemplate = {
  content: { subject: string; text: string; html: string | null };
  category: string | null;
  template: { id: string; version: number; approved: true; reasons: TemplateReason[] };
};

const contentHashOf = (c: { subject: string; text: string; html: string | null; slots: SlotDef[]; category: string | null }) =>
  sha256Hex(canonicalJson({ subject: c.subject, text: c.text, html: c.html, slots: c.slots, category: c.category }));

const versionView = (v: TemplateVersion) => ({
  version: v.version,
  subject: v.subject,
  text: v.text,
  html: v.html,
  slots: v.slots,
  category: v.category,
  allowed_phi_types: v.allowed_phi_types,
  content_hash: v.content_hash,
  status: v.status,
  created_by: v.created_by,
  created_at: v.created_at,
  approved_by: v.approved_by,
  approved_at: v.approved_at,
  // biome-ignore lint/suspicious/noExplicitAny: the stored signature has the shape signatureOut describes
  signature: v.signature as any,
});

export const createTemplatesService = ({ db, guard, clock, repo, screen }: Deps) => {
  const now = () => clock.now().toISOString();
  const target = (id: string | null) => (id ? { type: 'template', id } : null);

  /** Authors write templates: admins and reviewers (a reviewer still never approves their own version). */
  const requireAuthor = (ctx: RequestContext) => requireAnyRole(ctx, ['admin', 'reviewer'], 'template');

  /** Any human of the organisation, and agents that send or read mail (they need the slots). */
  const requireReader = (ctx: RequestContext) => {
    const p = ctx.principal;
    if (p.type === 'agent' && !hasScope(p, 'mail:send') && !hasScope(p, 'mail:read'))
      throw forbidden('scope_required', 'This key lacks the mail:send scope.');
  };

  /** The PHI types the scanner finds in the version's own text with placeholder values: what its messages may carry. */
  const allowedTypes = async (c: { subject: string; text: string; html: string | null; slots: SlotDef[] }, ctx: RequestContext) => {
    const r = renderTemplate(c, placeholderValues(c.slots));
    const a = await screen.scan(
      { to: [], cc: [], bcc: [], subject: r.subject, text: r.text, html: r.html, attachments: [] },
      ctx.principal.org.domain,
      ctx.principal.org.name,
    );
    return [...new Set(a.findings.map((f) => f.type))].sort();
  };

  const newVersion = async (ctx: RequestContext, templateId: string, n: number, body: UpdateTemplateInput) => {
    checkPlaceholders(body, body.slots);
    const c = { subject: body.subject, text: body.text, html: body.html ?? null, slots: body.slots, category: body.category ?? null };
    return {
      template_id: templateId,
      version: n,
      org_id: ctx.principal.orgId,
      ...c,
      allowed_phi_types: await allowedTypes(c, ctx),
      content_hash: contentHashOf(c),
      created_by: ctx.principal.id,
      created_at: now(),
    };
  };

  const auditFacts = (v: { version: number; slots: SlotDef[]; category: string | null; allowed_phi_types: string[] }) => ({
    version: v.version,
    slots: v.slots.map((s) => ({ name: s.name, type: s.type })),
    category: v.category,
    allowed_phi_types: v.allowed_phi_types,
  });

  /**
   * Writes a template and its version 1, pending approval (admin or reviewer). Throws 403 role_required, 409
   * template_name_taken, 422 unknown_slot. Audits template.created (content hash, slots; never the text).
   */
  const create = async (ctx: RequestContext, body: CreateTemplateInput) => {
    await guard.read(ctx, 'template.created', null, async () => requireAuthor(ctx));
    const id = newId('template');
    const v = await newVersion(ctx, id, 1, body);
    return guard.change(ctx, 'template.created', target(id), async (tx) => {
      const row: TemplatesTable = {
        id,
        org_id: ctx.principal.orgId,
        name: body.name,
        created_by: ctx.principal.id,
        created_at: v.created_at,
        updated_at: v.created_at,
        current_version: 1,
      };
      try {
        await repo.insertTemplate(tx, row);
      } catch (e) {
        if (isUniqueViolation(e)) throw conflict('template_name_taken', 'The organization already has a template with that name.');
        throw e;
      }
      await repo.insertVersion(tx, v);
      await guard.recordIn(tx, ctx, 'template.created', target(id), { name_hash: sha256Hex(body.name), ...auditFacts(v) }, v.content_hash);
      return { id, version: 1, status: 'pending' };
    });
  };

  /**
   * A new version of a template (admin or reviewer), pending until a reviewer approves it; the approved version
   * stays the one sends use meanwhile. Throws 403, 404 template, 422 unknown_slot. Audits template.updated.
   */
  const update = async (ctx: RequestContext, id: string, body: UpdateTemplateInput) => {
    await guard.read(ctx, 'template.updated', target(id), async () => requireAuthor(ctx));
    return guard.change(ctx, 'template.updated', target(id), async (tx) => {
      const t = await repo.template(tx, ctx.principal.orgId, id);
      if (!t) throw notFound('template');
      const v = await newVersion(ctx, id, t.current_version + 1, body);
      await repo.insertVersion(tx, v);
      await guard.recordIn(tx, ctx, 'template.updated', target(id), auditFacts(v), v.content_hash);
      return { id, version: v.version, status: 'pending' };
    });
  };

  /**
   * A reviewer approves the newest version once, with a signature manifestation (21 CFR 11.50: signer, meaning,
   * time; 11.70: linked to the record by its content hash). Never its author: 403 author_cannot_approve. Throws
   * 404 template, 409 template_version_decided (already approved or superseded) / template_version_stale (a
   * newer version exists). Audits template.approved with the signature.
   */
  const approve = (ctx: RequestContext, id: string, body: { version?: number | undefined }) =>
    guard.change(ctx, 'template.approved', target(id), async (tx) => {
      requireAnyRole(ctx, ['reviewer'], 'template');
      const t = await repo.template(tx, ctx.principal.orgId, id);
      if (!t) throw notFound('template');
      const n = body.version ?? t.current_version;
      if (n !== t.current_version) throw conflict('template_version_stale', `Version ${t.current_version} is newer; approve that one.`);
      const v = await repo.version(tx, id, n);
      if (!v) throw notFound('template');
      if (v.status !== 'pending') throw conflict('template_version_decided', `Version ${n} is already ${v.status}.`);
      if (v.created_by === ctx.principal.id)
        throw forbidden('author_cannot_approve', 'The author of a template version can never approve it.');
      const at = now();
      const signature = {
        signer: { id: ctx.principal.id, name: ctx.principal.name },
        meaning: MEANING,
        method: 'api_key',
        key_id: ctx.principal.keyId,
        at,
        content_hash: v.content_hash,
      };
      if (!(await repo.approve(tx, id, n, { id: ctx.principal.id, at, signature })))
        throw conflict('template_version_decided', `Version ${n} was decided by someone else.`);
      await guard.recordIn(tx, ctx, 'template.approved', target(id), { version: n, signature }, v.content_hash);
      return get0(tx, ctx, id);
    });

  const get0 = async (ex: Executor, ctx: RequestContext, id: string) => {
    const t = await repo.template(ex, ctx.principal.orgId, id);
    if (!t) throw notFound('template');
    const versions = await repo.versions(ex, id);
    return {
      id: t.id,
      name: t.name,
      created_by: t.created_by,
      created_at: t.created_at,
      current_version: t.current_version,
      approved_version: versions.find((v) => v.status === 'approved')?.version ?? null,
      versions: versions.map(versionView),
    };
  };

  /** A template with all its versions (humans of the organisation; agents with mail:send or mail:read). Throws 404. */
  const get = (ctx: RequestContext, id: string) =>
    guard.read(ctx, 'template.read', target(id), async () => {
      requireReader(ctx);
      return get0(db, ctx, id);
    });

  const list = (ctx: RequestContext) =>
    guard.read(ctx, 'template.list', null, async () => {
      requireReader(ctx);
      const out = [];
      for (const t of await repo.list(db, ctx.principal.orgId)) {
        const approved = await repo.approvedVersion(db, t.id);
        out.push({
          id: t.id,
          name: t.name,
          created_by: t.created_by,
          created_at: t.created_at,
          current_version: t.current_version,
          approved_version: approved?.version ?? null,
          category: approved?.category ?? null,
        });
      }
      return { templates: out };
    });

  const scanTypes = async (ctx: RequestContext, c: { subject: string; text: string; html: string | null }) => {
    const a = await screen.scan({ to: [], cc: [], bcc: [], ...c, attachments: [] }, ctx.principal.org.domain, ctx.principal.org.name);
    return [...new Set(a.findings.map((f) => f.type))].sort() as string[];
  };

  /**
   * The send path's side of a template send (called before anything is stored): the organisation's template
   * (404 template), its approved version (409 template_not_approved), the slot values checked against their
   * types (422 invalid_slot naming the slot), the rendered content, and the hold reasons of PHI that the version
   * does not allow: each slot value is scanned on its own (a slot cannot smuggle an MRN or a diagnosis:
   * template_slot_phi) and the rendered message as a whole (template_phi). Writes nothing.
   */
  const prepare = async (ex: Executor, ctx: RequestContext, templateId: string, slots: SlotValues): Promise<PreparedTemplate> => {
    const t = await repo.template(ex, ctx.principal.orgId, templateId);
    if (!t) throw notFound('template');
    const v = await repo.approvedVersion(ex, templateId);
    if (!v) throw notApproved();
    const values = validateSlots(v.slots, slots);
    const reasons: TemplateReason[] = [];
    const slotAllowed = new Set<string>();
    for (const s of v.slots) {
      const allowed = new Set<string>(SLOT_ALLOWED_PHI[s.type]);
      for (const a of allowed) slotAllowed.add(a);
      const found = (await scanTypes(ctx, { subject: '', text: values[s.name]!, html: null })).filter((x) => !allowed.has(x));
      if (found.length > 0) reasons.push({ code: 'template_slot_phi', slot: s.name, types: found });
    }
    const content = renderTemplate(v, values);
    const versionAllowed = new Set([...v.allowed_phi_types, ...slotAllowed]);
    const extra = (await scanTypes(ctx, content)).filter((x) => !versionAllowed.has(x));
    if (extra.length > 0 && reasons.length === 0) reasons.push({ code: 'template_phi', types: extra });
    return { content, category: v.category, template: { id: t.id, version: v.version, approved: true, reasons } };
  };

  /** The organisation's template's approved version (404 template, 409 template_not_approved). Writes nothing. */
  const approvedVersionOf = async (ex: Executor, ctx: RequestContext, templateId: string) => {
    const t = await repo.template(ex, ctx.principal.orgId, templateId);
    if (!t) throw notFound('template');
    const v = await repo.approvedVersion(ex, templateId);
    if (!v) throw notApproved();
    return { id: t.id, version: v.version };
  };

  return { create, update, approve, get, list, prepare, approvedVersionOf };
};

export type TemplatesService = ReturnType<typeof createTemplatesService>;
