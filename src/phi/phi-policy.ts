import type { OversightMode } from '../store/schema.js';
import type { About, Assessment } from './phi-context.js';
import type { Disclosure } from './phi-context-lexicon.js';
import { sensitivityOf } from './phi-scanner.js';
import { type Finding, type FindingType, SENSITIVITIES, type Sensitivity } from './phi-types.js';

/** Why a message is held, as the approval queue and the reviewer see it. */
export type PhiHoldReason =
  | {
      code: 'phi';
      types: FindingType[];
      /** Set by the message-level judgement: whom the health information is about, and what it discloses. */
      about?: About;
      disclosures?: Disclosure[];
      /** The local model's probability, when one is configured (MAILWARD_PHI_MODEL). */
      model_probability?: number;
      /** The trained classifier's probability (phi-classifier.ts), the default decision. */
      classifier_probability?: number;
      /** The features that weighed most towards the hold, by name (rule features, text groups), never the message's words. */
      top_features?: string[];
    }
  | { code: 'part2' }
  | { code: 'phi_in_subject' };

export type PhiDecision = { hold: boolean; sensitivity: Sensitivity; reasons: PhiHoldReason[] };

/**
 * A mailbox's PHI policy. `hold_at` is the lowest sensitivity that holds a
 * message in a mode ('never' turns PHI holds off for that mode); `hold_types`
 * hold whenever one of those types is found, in any mode. Part 2 content and
 * PHI in a subject are held whatever this says.
 */
export type MailboxPhiPolicy = {
  hold_at?: Partial<Record<OversightMode, Sensitivity | 'never'>>;
  hold_types?: readonly FindingType[];
};

/**
 * The default: hold what carries more than a first name and an appointment
 * (45 CFR 164.502(b), minimum necessary) in every mode a human watches;
 * `autonomous` holds nothing by default but Part 2 and subject PHI.
 */
export const DEFAULT_HOLD_AT: Record<OversightMode, Sensitivity | 'never'> = {
  autonomous: 'never',
  monitored: 'moderate',
  gated_send: 'moderate',
  gated_all: 'moderate',
  read_only: 'moderate',
};

const rank = (s: Sensitivity) => SENSITIVITIES.indexOf(s);

/**
 * Decides whether findings hold an outbound message for review in `mode`.
 * Pure: the caller turns `hold` into `pending_approval` and stores `reasons`.
 * - 42 CFR Part 2: substance-use-disorder content is always held (2.32, no redisclosure without consent);
 * - PHI in a subject is always held: subjects show in notifications, lock screens and logs;
 * - otherwise the mailbox's threshold for the mode (default DEFAULT_HOLD_AT) and its always-hold types.
 */
export const policyDecision = (findings: readonly Finding[], mode: OversightMode, mailboxPolicy?: MailboxPhiPolicy | null): PhiDecision => {
  const sensitivity = sensitivityOf(findings);
  const reasons: PhiHoldReason[] = [];
  if (findings.length === 0) return { hold: false, sensitivity, reasons };
  if (findings.some((f) => f.type === 'part2')) reasons.push({ code: 'part2' });
  if (findings.some((f) => f.field === 'subject')) reasons.push({ code: 'phi_in_subject' });
  const threshold = mailboxPolicy?.hold_at?.[mode] ?? DEFAULT_HOLD_AT[mode];
  const byLevel = threshold !== 'never' && rank(sensitivity) >= rank(threshold);
  const alwaysTypes = new Set(mailboxPolicy?.hold_types ?? []);
  const byType = findings.some((f) => alwaysTypes.has(f.type));
  if (reasons.length > 0 || byLevel || byType) {
    const types = [...new Set(findings.map((f) => f.type))].sort();
    reasons.push({ code: 'phi', types });
  }
  return { hold: reasons.length > 0, sensitivity, reasons };
};

/**
 * Decides whether a message is held, from the message-level judgement
 * (phi-context.ts) rather than from a count of spans: a minimal reminder (a
 * name, a time, the clinic's address) is `low` and flows where the threshold
 * is `moderate`; health information tied to a person is `high`; a sensitive
 * identifier alone is `moderate`. Pure.
 * - 42 CFR Part 2 (2.12, 2.13): substance-use-disorder treatment tied to a person is always held;
 * - a subject that itself discloses health information or an identifier is always held (subjects show in notifications);
 * - otherwise the mailbox's threshold for the mode (default DEFAULT_HOLD_AT) and its always-hold types (span types).
 */
export const messageDecision = (a: Assessment, mode: OversightMode, mailboxPolicy?: MailboxPhiPolicy | null): PhiDecision => {
  const reasons: PhiHoldReason[] = [];
  if (a.part2) reasons.push({ code: 'part2' });
  if (a.subjectPhi) reasons.push({ code: 'phi_in_subject' });
  const threshold = mailboxPolicy?.hold_at?.[mode] ?? DEFAULT_HOLD_AT[mode];
  const byLevel =
    threshold !== 'never' &&
    a.sensitivity !== 'none' &&
    rank(a.sensitivity) >= rank(threshold) &&
    (a.phi || rank(threshold) <= rank('low'));
  const alwaysTypes = new Set(mailboxPolicy?.hold_types ?? []);
  const byType = a.findings.some((f) => alwaysTypes.has(f.type)) || a.identifiers.some((t) => alwaysTypes.has(t));
  if (reasons.length > 0 || byLevel || byType) {
    const types = [...new Set<FindingType>([...a.findings.map((f) => f.type), ...a.identifiers])].sort();
    const model = a.modelProbability === undefined ? {} : { model_probability: Math.round(a.modelProbability * 1000) / 1000 };
    const classifier =
      a.classifier === undefined
        ? {}
        : { classifier_probability: Math.round(a.classifier.probability * 1000) / 1000, top_features: a.classifier.top };
    reasons.push(
      a.phi ? { code: 'phi', types, about: a.about, disclosures: a.disclosures, ...classifier, ...model } : { code: 'phi', types },
    );
  }
  return { hold: reasons.length > 0, sensitivity: a.sensitivity, reasons };
};
