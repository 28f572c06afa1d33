import type { Executor } from '../store/db.js';
import type { OversightMode } from '../store/schema.js';
import { type ConsentService, consentGate } from './consent-service.js';
import { classifyMessage } from './phi-classifier.js';
import { type Assessment, type ContextOptions, readForJudgement } from './phi-context.js';
import type { PhiModel } from './phi-model.js';
import { DEFAULT_HOLD_AT, type MailboxPhiPolicy, messageDecision, type PhiHoldReason } from './phi-policy.js';
import type { PhiFindingOut, PhiPolicyInput } from './phi-schemas.js';
import { type Finding, SENSITIVITIES } from './phi-types.js';

/** The content the outbound path scans: the sealed message document, attachments as base64. */
export type OutboundContent = {
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  text: string | null;
  html: string | null;
  /**
   * `raw_part` (received mail only): the bytes are not in this document but in the message's sealed raw
   * bytes, the `raw_part`-th attachment mailparser finds there (src/mail/mime.ts attachmentFromRaw);
   * `content_base64` is then empty and `size` gives the decoded length.
   */
  attachments: { filename: string; content_type: string; content_base64: string; size?: number; raw_part?: number }[];
};

/** CONTRACT.md, hold reason: `consent_category` names the message's category; counts, never addresses. */
export type ConsentHoldReason =
  | { code: 'consent_unknown'; recipients: number }
  | { code: 'consent_category'; category: string; recipients: number };

export type ConsentCheck = {
  /** Recipients whose consent is refused (45 CFR 164.522(b)): the message must not go. */
  refused: number;
  /** Index of the first refused recipient in to, cc, bcc order, or -1. */
  firstRefused: number;
  /** Recipients whose consent is unknown while the message carries PHI. */
  held: number;
  /** Recipients who consented to categories that do not include the message's category. */
  categoryHeld: number;
  /** Index of the first of those in to, cc, bcc order, or -1. */
  firstCategoryHeld: number;
  /** The category checked (null: the message has none, so no category restriction applies). */
  category: string | null;
};

/** What is stored with the message: type, place and confidence, never the matched text. */
export const storedFindings = (findings: readonly Finding[]): PhiFindingOut[] =>
  findings.map((f) => ({
    type: f.type,
    field: f.field ?? 'text',
    ...(f.attachment === undefined ? {} : { attachment: f.attachment }),
    start: f.start,
    end: f.end,
    confidence: f.confidence,
  }));

export const parsePhiPolicy = (json: string | null): PhiPolicyInput | null => (json ? (JSON.parse(json) as PhiPolicyInput) : null);

const THRESHOLDS = [...SENSITIVITIES, 'never'] as const;

/**
 * True when `after` holds less than `before` in some mode: a higher threshold
 * (or 'never') for a mode, or an always-hold type removed. Audited as such.
 */
export const isPhiPolicyLoosening = (before: MailboxPhiPolicy | null, after: MailboxPhiPolicy | null): boolean => {
  const at = (p: MailboxPhiPolicy | null, m: OversightMode) => THRESHOLDS.indexOf(p?.hold_at?.[m] ?? DEFAULT_HOLD_AT[m]);
  if ((Object.keys(DEFAULT_HOLD_AT) as OversightMode[]).some((m) => at(after, m) > at(before, m))) return true;
  const kept = new Set(after?.hold_types ?? []);
  return (before?.hold_types ?? []).some((t) => !kept.has(t));
};

/** Recipients in to, cc, bcc order, lower case, each once. */
const recipientsOf = (c: Pick<OutboundContent, 'to' | 'cc' | 'bcc'>) => [
  ...new Set([...c.to, ...c.cc, ...c.bcc].map((a) => a.toLowerCase())),
];

/**
 * The PHI and consent checks of the outbound path, shared by send,
 * reply and approve-with-edits. `scan` is pure CPU and runs before the
 * transaction; `checkConsent` reads in the caller's transaction, so a consent
 * recorded concurrently is either seen or ordered after the send.
 */
export const createOutboundScreen = ({
  consent,
  model = null,
}: {
  consent: Pick<ConsentService, 'consentFor'>;
  model?: PhiModel | null;
}) => {
  const optionsCache = new Map<string, ContextOptions>();
  /** The organisation's own domain (staff addresses and links are not patient identifiers) and name (never a disclosure). */
  const optionsFor = (domain: string, orgName?: string): ContextOptions => {
    const key = `${domain}\n${orgName ?? ''}`;
    let o = optionsCache.get(key);
    if (!o) {
      o = { orgDomains: [domain], ...(orgName ? { orgNames: [orgName] } : {}) };
      optionsCache.set(key, o);
    }
    return o;
  };

  /**
   * Judges subject, text, html and attachments (text types; images flagged as
   * possible photos) at the message level (phi-context.ts); with a local model
   * configured (MAILWARD_PHI_MODEL), its probability can add a hold, never remove one.
   */
  const scan = async (c: OutboundContent, orgDomain: string, orgName?: string): Promise<Assessment> => {
    const msg = {
      subject: c.subject,
      text: c.text,
      html: c.html,
      attachments: c.attachments.map((a) => ({
        filename: a.filename,
        content_type: a.content_type,
        content: Buffer.from(a.content_base64, 'base64'),
      })),
    };
    const { rules, full, subjectEnd, low } = readForJudgement(msg, optionsFor(orgDomain, orgName));
    const judged = classifyMessage(rules, full, subjectEnd, undefined, low);
    return model ? model.combine(judged, `${c.subject}\n${c.text ?? ''}`, rules) : judged;
  };

  /**
   * Consent of every recipient (to, cc and bcc): refused ones are counted
   * (the caller refuses the message), unknown ones hold it when it carries PHI,
   * and a granted consent listing categories without the message's `category`
   * holds it too (`consentGate`; 45 CFR 164.522: the patient's restriction).
   * Writes nothing; returns counts only, never addresses.
   */
  const checkConsent = async (
    ex: Executor,
    orgId: string,
    c: Pick<OutboundContent, 'to' | 'cc' | 'bcc'>,
    hasPhi: boolean,
    category: string | null = null,
  ): Promise<ConsentCheck> => {
    const out: ConsentCheck = { refused: 0, firstRefused: -1, held: 0, categoryHeld: 0, firstCategoryHeld: -1, category };
    const all = recipientsOf(c);
    for (const [i, address] of all.entries()) {
      const state = await consent.consentFor(orgId, address, ex);
      const gate = consentGate(state, { hasPhi, category });
      if (gate === 'refuse') {
        out.refused++;
        if (out.firstRefused < 0) out.firstRefused = i;
      } else if (gate === 'hold' && state.status === 'granted') {
        out.categoryHeld++;
        if (out.firstCategoryHeld < 0) out.firstCategoryHeld = i;
      } else if (gate === 'hold') out.held++;
    }
    return out;
  };

  /**
   * The hold reasons PHI and consent add to a message in `mode` under the
   * mailbox policy, from the message-level judgement (messageDecision). `read_only` never gets here: it refuses before.
   */
  const holdReasons = (assessment: Assessment, mode: OversightMode, policy: MailboxPhiPolicy | null, check: ConsentCheck) => {
    const phi = messageDecision(assessment, mode, policy);
    const reasons: (PhiHoldReason | ConsentHoldReason)[] = phi.hold ? [...phi.reasons] : [];
    if (check.held > 0) reasons.push({ code: 'consent_unknown', recipients: check.held });
    if (check.categoryHeld > 0 && check.category)
      reasons.push({ code: 'consent_category', category: check.category, recipients: check.categoryHeld });
    return { sensitivity: phi.sensitivity, reasons };
  };

  return { scan, checkConsent, holdReasons, recipientsOf };
};

export type OutboundScreen = ReturnType<typeof createOutboundScreen>;
