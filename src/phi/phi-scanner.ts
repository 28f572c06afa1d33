import { indexContacts, scanLexicon } from './phi-lexicon-detector.js';
import { addressKey, compileMrnPatterns, normalisePhones, type PatternContext, PatternScan } from './phi-pattern-detectors.js';
import {
  type Category,
  type Finding,
  type FindingField,
  type FindingType,
  isClinical,
  isIdentifier,
  type ScanOptions,
  type ScanResult,
  type Sensitivity,
} from './phi-types.js';

type Compiled = { patterns: PatternContext; contacts: ReturnType<typeof indexContacts> | null; minConfidence: number };

const cache = new WeakMap<ScanOptions, Compiled>();
const EMPTY: ScanOptions = {};

const compile = (options: ScanOptions): Compiled => {
  let c = cache.get(options);
  if (!c) {
    c = {
      patterns: {
        orgPhones: normalisePhones(options.orgPhones ?? []),
        orgDomains: (options.orgDomains ?? []).map((d) => d.toLowerCase()),
        mrnPatterns: compileMrnPatterns(options.mrnPatterns ?? []),
        orgAddressKeys: new Set((options.orgAddresses ?? []).map(addressKey).filter(Boolean)),
        orgZips: new Set((options.orgAddresses ?? []).flatMap((a) => /\b\d{5}(?:-\d{4})?\b/.exec(a)?.[0] ?? [])),
      },
      contacts: options.contacts && options.contacts.length > 0 ? indexContacts(options.contacts) : null,
      minConfidence: options.minConfidence ?? 0.5,
    };
    cache.set(options, c);
  }
  return c;
};

const byOffsets = (a: Finding, b: Finding) => a.start - b.start || a.end - b.end;

/**
 * Keeps, of overlapping findings, the most confident (then the longest):
 * one span, one type, so a reviewer sees "555-201-3344 is a fax", not three guesses.
 */
const resolveOverlaps = (found: Finding[]): Finding[] => {
  if (found.length < 2) return found;
  // Most texts have no overlapping findings: then every one is kept, and the result is the same list in order of
  // offsets; checked on that order (each finding against the furthest end before it) without ranking them.
  found.sort(byOffsets);
  let reach = found[0]!.end;
  let overlap = false;
  for (let k = 1; k < found.length && !overlap; k++) {
    const f = found[k]!;
    if (f.start < reach) overlap = true;
    else if (f.end > reach) reach = f.end;
  }
  if (!overlap) return found;
  const ranked = found.sort((a, b) => b.confidence - a.confidence || b.end - b.start - (a.end - a.start) || a.start - b.start);
  const kept: Finding[] = [];
  for (const f of ranked) {
    if (!kept.some((k) => f.start < k.end && k.start < f.end)) kept.push(f);
  }
  return kept.sort(byOffsets);
};

/** Identifiers that single a person out on their own (or nearly): with nothing else they already make a message moderate. */
const STRONG: ReadonlySet<FindingType> = new Set<FindingType>([
  'ssn',
  'mrn',
  'health_plan_id',
  'account_number',
  'license_number',
  'vehicle_id',
  'device_id',
  'dob',
  'age_over_89',
  'other_id',
  'address',
  'possible_full_face_photo',
]);

/**
 * Message sensitivity from its findings:
 * restricted: 42 CFR Part 2 content; high: clinical content with an identifier, or an SSN;
 * moderate: a strong identifier, or clinical content alone (the recipient identifies the patient);
 * low: weak identifiers only (first name, appointment date, phone...); none: nothing found.
 */
export const sensitivityOf = (findings: readonly Pick<Finding, 'type'>[]): Sensitivity => {
  if (findings.length === 0) return 'none';
  if (findings.some((f) => f.type === 'part2')) return 'restricted';
  let identifier = false;
  let strong = false;
  let clinical = false;
  for (const f of findings) {
    if (f.type === 'ssn') return 'high';
    if (isClinical(f.type)) clinical = true;
    else if (isIdentifier(f.type)) {
      identifier = true;
      if (STRONG.has(f.type)) strong = true;
    }
  }
  if (clinical && identifier) return 'high';
  if (strong || clinical) return 'moderate';
  return 'low';
};

export const categoriesOf = (findings: readonly Pick<Finding, 'type'>[]): Category[] => {
  const set = new Set<Category>();
  for (const f of findings) set.add(f.type === 'part2' ? 'part2' : isClinical(f.type) ? 'clinical' : 'identifier');
  return (['identifier', 'clinical', 'part2'] as const).filter((c) => set.has(c));
};

const findingsIn = (text: string, c: Compiled): Finding[] => {
  const found: Finding[] = [];
  const min = c.minConfidence;
  // One walk over the words: the vocabulary and names, and the patterns at the words that can begin them.
  const patterns = new PatternScan(text, c.patterns, (type, start, end, confidence, detector) => {
    if (confidence >= min && end > start) found.push({ type, start, end, confidence, detector });
  });
  scanLexicon(text, c.contacts, found, patterns);
  patterns.finish();
  if (min > 0) for (let k = found.length - 1; k >= 0; k--) if (found[k]!.confidence < min) found.splice(k, 1);
  return resolveOverlaps(found);
};

/**
 * Finds PHI in one text. Pure and synchronous: no I/O, no logging. Findings
 * carry type, offsets, confidence and detector only; never the matched text.
 */
export const scanText = (text: string, options: ScanOptions = EMPTY): ScanResult => {
  const findings = findingsIn(text, compile(options));
  return { findings, sensitivity: sensitivityOf(findings), categories: categoriesOf(findings) };
};

export type MessageAttachment = { filename?: string | null; content_type?: string | null; content?: Buffer | Uint8Array | null };
export type MessageToScan = {
  subject?: string | null;
  text?: string | null;
  html?: string | null;
  attachments?: readonly MessageAttachment[];
};

/**
 * Blanks tags, comments, scripts and entities with spaces of the same length,
 * so offsets found in the result point into the original markup.
 */
export const blankHtml = (html: string): string =>
  html.replace(/<(script|style)\b[\s\S]*?<\/\1\s*>|<!--[\s\S]*?-->|<[^>]*>|&#?[A-Za-z0-9]{1,10};/gi, (m) =>
    // A tag or entity becomes spaces; newlines inside it stay, so line structure survives.
    m.replace(/[^\n]/g, ' '),
  );

const TEXT_TYPES = /^(?:text\/|application\/(?:json|xml|csv|x-csv|rtf|x-ndjson|ld\+json|fhir\+json|fhir\+xml|hl7-v2)|message\/rfc822)/i;
const IMAGE_TYPES = /^image\//i;
const IMAGE_NAMES = /\.(?:jpe?g|png|gif|bmp|tiff?|heic|heif|webp)$/i;
/** Text attachments larger than this are scanned up to it only; the rest is treated as unscanned. */
const MAX_ATTACHMENT_SCAN = 2 * 1024 * 1024;

/**
 * Appends the findings of one field to `out`, marked with the field (and the attachment's index). The findings are
 * the scan's own new objects, so they are marked in place (the same keys in the same order as a copy would have),
 * and this is a function of the module, not a closure made per message.
 */
const addFindings = (out: Finding[], c: Compiled, field: FindingField, text: string | null | undefined, attachment?: number) => {
  if (!text) return;
  for (const f of findingsIn(text, c)) {
    f.field = field;
    if (attachment !== undefined) f.attachment = attachment;
    out.push(f);
  }
};

/**
 * Scans subject, text, html (tags blanked) and text attachments (and their
 * file names); image attachments are flagged `possible_full_face_photo`
 * (Safe Harbor (Q)), because nothing here can tell a face from a scan.
 * Each finding says which `field` (and `attachment` index) it is in; a
 * finding in the subject is always held by the policy.
 */
export const scanMessage = (msg: MessageToScan, options: ScanOptions = EMPTY): ScanResult => {
  const findings = scanMessageFindings(msg, options);
  return { findings, sensitivity: sensitivityOf(findings), categories: categoriesOf(findings) };
};

/** The findings of scanMessage alone, without the sensitivity and categories (the message-level judgement makes its own). */
export const scanMessageFindings = (msg: MessageToScan, options: ScanOptions = EMPTY): Finding[] => {
  const c = compile(options);
  const findings: Finding[] = [];
  addFindings(findings, c, 'subject', msg.subject);
  addFindings(findings, c, 'text', msg.text);
  if (msg.html) addFindings(findings, c, 'html', blankHtml(msg.html));
  (msg.attachments ?? []).forEach((a, i) => {
    addFindings(findings, c, 'attachment_name', a.filename?.replace(/[_.]+/g, ' '), i);
    const type = a.content_type ?? '';
    if (IMAGE_TYPES.test(type) || (!type && a.filename && IMAGE_NAMES.test(a.filename))) {
      findings.push({
        type: 'possible_full_face_photo',
        start: 0,
        end: 0,
        confidence: 0.5,
        detector: 'attachment.image',
        field: 'attachment',
        attachment: i,
      });
      return;
    }
    if (a.content && TEXT_TYPES.test(type)) {
      const buf = Buffer.from(a.content.buffer, a.content.byteOffset, Math.min(a.content.byteLength, MAX_ATTACHMENT_SCAN));
      addFindings(findings, c, 'attachment', buf.toString('utf8'), i);
    }
  });
  return findings;
};
