import { AppError, unprocessable } from '../kernel/errors.js';
import type { FindingType } from '../phi/phi-types.js';
import type { SlotDef, SlotType, SlotValues } from './templates-schemas.js';

/**
 * Rendering and slot rules of templates, pure: `{{slot_name}}` placeholders in subject, text and html, replaced
 * by the slot's value (html-escaped in html), with no logic (no conditions, loops or partials), so what a
 * reviewer approves is exactly the shape of every message sent from it.
 */

const PLACEHOLDER = /\{\{\s*([a-z][a-z0-9_]{0,39})\s*\}\}/g;

/** Control and format characters (bidi overrides included) and line breaks: never in a slot value, which may reach a header. */
const UNSAFE = /[\p{Cc}\p{Cf}\u2028\u2029]/u;

const DEFAULT_SHORT_TEXT = 60;

/** What each slot type accepts. A value failing it answers 422 invalid_slot naming the slot. */
const VALUE_RULES: Record<SlotType, { max: number; test: (v: string) => boolean; says: string }> = {
  patient_name: { max: 80, test: (v) => /^[\p{L}][\p{L}\p{M} '’-]*$/u.test(v), says: 'letters, spaces, hyphens and apostrophes' },
  date: {
    max: 10,
    // ISO 8601 calendar date, and a real one (2026-02-30 is refused).
    test: (v) =>
      /^\d{4}-\d{2}-\d{2}$/.test(v) &&
      !Number.isNaN(Date.parse(`${v}T00:00:00Z`)) &&
      new Date(`${v}T00:00:00Z`).toISOString().startsWith(v),
    says: 'an ISO date YYYY-MM-DD',
  },
  time: { max: 5, test: (v) => /^([01]\d|2[0-3]):[0-5]\d$/.test(v), says: 'a time HH:MM (24-hour)' },
  provider: { max: 80, test: (v) => /^[\p{L}][\p{L}\p{M} .,'’-]*$/u.test(v), says: 'a name (letters, spaces, . , - and apostrophes)' },
  location: { max: 120, test: (v) => /^[\p{L}\p{N}][\p{L}\p{M}\p{N} .,'’#&/()-]*$/u.test(v), says: 'a place name or street address' },
  short_text: { max: DEFAULT_SHORT_TEXT, test: (v) => v.trim().length > 0, says: 'short text' },
};

/**
 * The PHI types a slot's value may carry (45 CFR 164.514(b)(2)(i) identifiers the slot is meant for); anything
 * else the scanner finds in it (an MRN, SSN, diagnosis, medication, ...) holds the message as template_slot_phi.
 */
export const SLOT_ALLOWED_PHI: Record<SlotType, readonly FindingType[]> = {
  patient_name: ['name'],
  provider: ['name'],
  date: ['date'],
  time: ['date'],
  location: ['address', 'zip'],
  short_text: [],
};

/** Values rendered into a version at approval time to learn which PHI types its own text carries. */
export const PLACEHOLDER_VALUES: Record<SlotType, string> = {
  patient_name: 'Alex Morgan',
  date: '2026-03-14',
  time: '09:30',
  provider: 'Dr. Sam Lee',
  location: 'Main Clinic',
  short_text: 'please arrive early',
};

/** Names of the placeholders used in a string, each once, in order of appearance. */
export const placeholdersOf = (s: string): string[] => [...new Set([...s.matchAll(PLACEHOLDER)].map((m) => m[1]!))];

/** 422 unknown_slot when subject, text or html uses a placeholder that is not a declared slot. */
export const checkPlaceholders = (c: { subject: string; text: string; html?: string | null }, slots: readonly SlotDef[]) => {
  const declared = new Set(slots.map((s) => s.name));
  for (const field of ['subject', 'text', 'html'] as const) {
    const v = c[field];
    if (!v) continue;
    const unknown = placeholdersOf(v).find((n) => !declared.has(n));
    if (unknown) throw unprocessable('unknown_slot', `The ${field} uses {{${unknown}}}, which is not a declared slot.`);
  }
};

/** Checks slot values against their types; throws 422 invalid_slot (naming the slot, never its value). */
export const validateSlots = (slots: readonly SlotDef[], values: SlotValues): Record<string, string> => {
  const out: Record<string, string> = {};
  const declared = new Set(slots.map((s) => s.name));
  const extra = Object.keys(values).find((k) => !declared.has(k));
  const invalid = (slot: string, why: string) => new AppError('invalid_slot', 422, `Slot ${slot}: ${why}.`, { extra: { slot } });
  if (extra) throw invalid(extra, 'the template has no such slot');
  for (const s of slots) {
    const v = values[s.name];
    if (v === undefined) throw invalid(s.name, 'a value is required');
    const rule = VALUE_RULES[s.type];
    const max = s.type === 'short_text' ? (s.max_length ?? DEFAULT_SHORT_TEXT) : rule.max;
    if (v.length === 0 || v.length > max) throw invalid(s.name, `must be 1 to ${max} characters`);
    if (UNSAFE.test(v) || !rule.test(v)) throw invalid(s.name, `must be ${rule.says}`);
    out[s.name] = v;
  }
  return out;
};

/** HTML escaping of a slot value (OWASP XSS rule 1: & < > " '). */
const escapeHtml = (v: string) =>
  v.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;').replaceAll("'", '&#39;');

const fill = (s: string, values: Record<string, string>, asHtml: boolean) =>
  s.replace(PLACEHOLDER, (_m, name: string) => {
    const v = values[name] ?? '';
    return asHtml ? escapeHtml(v) : v;
  });

/** Renders a version with validated values. */
export const renderTemplate = (
  v: { subject: string; text: string; html: string | null },
  values: Record<string, string>,
): { subject: string; text: string; html: string | null } => ({
  subject: fill(v.subject, values, false),
  text: fill(v.text, values, false),
  html: v.html === null ? null : fill(v.html, values, true),
});

/** The placeholder value of every slot, for the version's own PHI types. */
export const placeholderValues = (slots: readonly SlotDef[]): Record<string, string> =>
  Object.fromEntries(slots.map((s) => [s.name, PLACEHOLDER_VALUES[s.type].slice(0, s.max_length ?? 120)]));
