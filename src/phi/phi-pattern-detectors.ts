import type { Finding, FindingType } from './phi-types.js';

/**
 * Regular-expression detectors for the Safe Harbor identifiers that have a
 * shape (45 CFR 164.514(b)(2)(i)): numbers, dates, addresses, links. Each
 * pattern is a single linear pass; context checks look at a few characters
 * around a match only.
 */

export type PatternContext = {
  orgPhones: ReadonlySet<string>;
  orgDomains: readonly string[];
  mrnPatterns: readonly RegExp[];
};

type Push = (type: FindingType, start: number, end: number, confidence: number, detector: string) => void;

/** Characters before `at`, back to (not including) the previous digit, at most `max`: the words that label a number. */
const labelBefore = (text: string, at: number, max: number) => {
  let k = at - 1;
  const stop = Math.max(0, at - max);
  while (k >= stop) {
    const c = text.charCodeAt(k);
    if (c >= 48 && c <= 57) break;
    k--;
  }
  return text.slice(k + 1, at);
};

// --- SSN (G) -------------------------------------------------------------
// SSA: area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
const SSN_RE = /\b(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}\b/g;
const SSN_BARE_RE = /\b(?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4}\b/g;
const SSN_LABEL = /(?:ssn|social security(?: number| no\.?| #)?|ss#)\s*[:#]?\s*(?:is\s*)?$/i;

// --- phone (D) and fax (E), NANP -----------------------------------------
const PHONE_RE = /(?<![\w-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:\s*(?:x|ext\.?|extension)\s*\d{1,5})?(?![\w-])/gi;
const PHONE_BARE_RE = /(?<![\w-])(?:\+?1)?\d{10}(?![\w-])/g;
const PHONE_LABEL = /(?:phone|tel|telephone|cell|mobile|call|text|fax|contact number|ph)\b[^\n]{0,14}$/i;
const FAX_LABEL = /fax/i;
const INTL_PHONE_RE = /(?<![\w+])\+(?:4[0-9]|3[0-9]|[2-9]\d)[\s.-]?\d{1,4}(?:[\s.-]?\d{2,4}){2,4}(?![\w-])/g;

// --- email (F), URL (N), IP (O) ------------------------------------------
const EMAIL_RE = /\b[A-Za-z0-9][A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b/g;
const URL_RE = /\b(?:https?:\/\/|www\.)[^\s<>"'()[\]{}]+/gi;
const IPV4_RE = /\b(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b/g;
const IPV6_RE = /\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:?){1,6}\b/gi;

// --- dates (C) ------------------------------------------------------------
const MONTH = '(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)';
const DATE_RE = new RegExp(
  [
    `\\b${MONTH}\\.?\\s+\\d{1,2}(?:st|nd|rd|th)?(?:,?\\s+\\d{4})?\\b`,
    `\\b\\d{1,2}(?:st|nd|rd|th)?\\s+(?:of\\s+)?${MONTH}\\.?(?:,?\\s+\\d{4})?\\b`,
    '\\b\\d{4}-\\d{1,2}-\\d{1,2}\\b',
    '\\b\\d{1,2}([/.-])\\d{1,2}\\1(?:\\d{4}|\\d{2})\\b',
  ].join('|'),
  'g',
);
const DOB_LABEL = /(?:\bdob|d\.o\.b\.?|date of birth|birth\s?date|born(?: on)?|birthday)\s*(?:is|was)?\s*[:\-–]?\s*$/i;
const AGE_RE = /\b(?:(?:age[ds]?|aged)\s*:?\s*(?:9\d|1[01]\d)\b|(?:9\d|1[01]\d)[\s-]*(?:years?|yrs?|y\/o|yo)(?:[\s-]*old)?\b)/gi;

// --- geography (B) ----------------------------------------------------------
const STREET_SUFFIX =
  '(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl)';
const ADDRESS_RE = new RegExp(
  `\\b\\d{1,6}[A-Za-z]?\\s+(?:[NSEW]\\.?\\s+)?(?:[A-Z][a-z]+|\\d{1,3}(?:st|nd|rd|th))(?:\\s+[A-Z][a-z]+){0,3}\\s+${STREET_SUFFIX}\\b\\.?` +
    `(?:,?\\s+(?:Apt|Apartment|Unit|Suite|Ste|#)\\.?\\s*#?[A-Za-z0-9-]+)?` +
    // City, when a state abbreviation follows (cities are geographic units smaller than a state).
    `(?:,\\s+[A-Z][a-z]+(?:\\s[A-Z][a-z]+){0,2}(?=,?\\s+[A-Z]{2}\\b))?`,
  'g',
);
const STATES = 'A[LKZR]|C[AOT]|D[EC]|FL|GA|HI|I[DLNA]|K[SY]|LA|M[EDAINSOT]|N[EVHJMYCD]|O[HKR]|PA|RI|S[CD]|T[NX]|UT|V[TA]|W[AVIY]';
const ZIP_STATE_RE = new RegExp(`\\b(?:${STATES}),?\\s+(\\d{5}(?:-\\d{4})?)\\b`, 'g');
const ZIP_LABEL_RE = /\b(?:zip(?:\s?code)?|postal code)\s*[:#]?\s*(\d{5}(?:-\d{4})?)\b/gi;

// --- labelled identifiers (H, I, J, K, L, M, R) -----------------------------
const NUM = '(?:number|num\\.?|no\\.?|#|id)';
const LABELLED_RE = new RegExp(
  '\\b(?:' +
    [
      `(?<mrn>mrn|mr\\s?#|medical record(?:s)?(?:\\s${NUM})?|med(?:ical)? rec(?:ord)?\\s?${NUM}?|chart\\s${NUM}|hospital\\s${NUM}|patient\\s(?:id|number|no\\.?|#))`,
      `(?<plan>member\\s${NUM}|subscriber\\s${NUM}|policy\\s${NUM}|insurance\\s${NUM}|medicare\\s(?:beneficiary\\s(?:identifier|${NUM})|${NUM})|mbi|medicaid\\s${NUM}|health plan\\s${NUM}|beneficiary\\s${NUM})`,
      `(?<acct>(?:patient |billing |guarantor )?account\\s${NUM}|acct\\.?(?:\\s${NUM})?|guarantor\\s${NUM})`,
      `(?<lic>driver'?s licen[cs]e(?:\\s${NUM})?|dl\\s?#|licen[cs]e\\s${NUM}|certificate\\s${NUM}|birth certificate(?:\\s${NUM})?|passport(?:\\s${NUM})?)`,
      `(?<veh>vin|vehicle identification number|licen[cs]e plate(?:\\s${NUM})?|plate\\s${NUM})`,
      `(?<dev>serial\\s${NUM}|s\\/n|device\\s(?:id|serial|identifier)(?:\\s${NUM})?|udi|implant\\s(?:id|serial)|(?:pump|pacemaker|defibrillator|monitor|meter)\\sserial(?:\\s${NUM})?)`,
      `(?<other>rx\\s?(?:${NUM})?|prescription\\s${NUM}|claim\\s${NUM}|case\\s${NUM}|encounter\\s${NUM}|accession\\s${NUM}|visit\\s${NUM}|referral\\s${NUM}|(?:prior\\s)?authori[sz]ation\\s${NUM}|prior auth\\s?#)`,
    ].join('|') +
    ")(?![a-z])\\s*(?:is\\s+)?[:#]?\\s*(?:is\\s+)?(?<value>(?=[A-Z0-9-]*\\d)[A-Z0-9](?:[A-Z0-9-]{1,22}[A-Z0-9])?)(?![\\w-])",
  'gi',
);
const LABEL_TYPE: Record<string, FindingType> = {
  mrn: 'mrn',
  plan: 'health_plan_id',
  acct: 'account_number',
  lic: 'license_number',
  veh: 'vehicle_id',
  dev: 'device_id',
  other: 'other_id',
};

// Unlabelled shapes with a fixed format.
// CMS Medicare Beneficiary Identifier: 11 characters, C A AN N A AN N A A N N (no S, L, O, I, B, Z).
const MBI_RE = /\b[1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-?[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-?[AC-HJKMNP-RT-Y]{2}\d{2}\b/g;
// ISO 3779 VIN: 17 characters without I, O, Q, with letters and digits.
const VIN_RE = /\b(?=[A-HJ-NPR-Z0-9]*[A-HJ-NPR-Z])(?=[A-HJ-NPR-Z0-9]*\d)[A-HJ-NPR-Z0-9]{17}\b/g;

// Clinical: ICD-10-CM codes with their dot (A00.0 - Z99.89); without the dot only after a cue.
const ICD10_RE = /\b[A-TV-Z]\d[0-9AB]\.[0-9A-Z]{1,4}\b/g;
const ICD10_CUED_RE = /\b(?:icd-?10(?:-cm)?(?:\scode)?|dx(?:\scode)?|diagnosis code)\s*[:#]?\s*([A-TV-Z]\d[0-9AB][0-9A-Z]{0,4})\b/gi;

const phoneDigits = (s: string) => {
  const d = s.replace(/\D/g, '');
  return d.length === 11 && d.startsWith('1') ? d.slice(1) : d;
};

const domainIsOrg = (domain: string, orgDomains: readonly string[]) => {
  const d = domain.toLowerCase();
  return orgDomains.some((o) => d === o || d.endsWith(`.${o}`));
};

const trimUrl = (s: string) => s.replace(/[.,;:!?]+$/, '');

export const scanPatterns = (text: string, ctx: PatternContext, push: Push) => {
  let m: RegExpExecArray | null;

  SSN_RE.lastIndex = 0;
  while ((m = SSN_RE.exec(text))) push('ssn', m.index, m.index + m[0].length, 0.95, 'pattern.ssn');
  SSN_BARE_RE.lastIndex = 0;
  while ((m = SSN_BARE_RE.exec(text))) {
    if (SSN_LABEL.test(labelBefore(text, m.index, 30))) push('ssn', m.index, m.index + m[0].length, 0.9, 'pattern.ssn_labelled');
  }

  const phone = (start: number, end: number, confidence: number, detector: string) => {
    if (ctx.orgPhones.size > 0 && ctx.orgPhones.has(phoneDigits(text.slice(start, end).replace(/\s*(?:x|ext\.?|extension)\s*\d+$/i, '')))) return;
    const isFax = FAX_LABEL.test(labelBefore(text, start, 24));
    push(isFax ? 'fax' : 'phone', start, end, confidence, detector);
  };
  PHONE_RE.lastIndex = 0;
  while ((m = PHONE_RE.exec(text))) phone(m.index, m.index + m[0].length, 0.9, 'pattern.phone');
  PHONE_BARE_RE.lastIndex = 0;
  while ((m = PHONE_BARE_RE.exec(text))) {
    if (PHONE_LABEL.test(labelBefore(text, m.index, 30))) phone(m.index, m.index + m[0].length, 0.8, 'pattern.phone_labelled');
  }
  INTL_PHONE_RE.lastIndex = 0;
  while ((m = INTL_PHONE_RE.exec(text))) {
    if (!m[0].startsWith('+1')) phone(m.index, m.index + m[0].length, 0.75, 'pattern.phone_intl');
  }

  EMAIL_RE.lastIndex = 0;
  while ((m = EMAIL_RE.exec(text))) {
    // Staff and role addresses of the organisation itself are not the patient's.
    if (!domainIsOrg(m[1]!, ctx.orgDomains)) push('email', m.index, m.index + m[0].length, 0.95, 'pattern.email');
  }
  URL_RE.lastIndex = 0;
  while ((m = URL_RE.exec(text))) {
    const u = trimUrl(m[0]);
    const host = /^(?:https?:\/\/)?([^/:?#]+)/i.exec(u)?.[1] ?? '';
    const rest = u.slice(u.toLowerCase().indexOf(host.toLowerCase()) + host.length);
    // A plain link to the organisation's site is not PHI; one carrying an id, token or query may be.
    if (domainIsOrg(host, ctx.orgDomains) && !/[?#=]|\d{3,}|[A-Za-z0-9_-]{20,}/.test(rest)) continue;
    push('url', m.index, m.index + u.length, 0.9, 'pattern.url');
  }
  IPV4_RE.lastIndex = 0;
  while ((m = IPV4_RE.exec(text))) push('ip_address', m.index, m.index + m[0].length, 0.85, 'pattern.ipv4');
  IPV6_RE.lastIndex = 0;
  while ((m = IPV6_RE.exec(text))) {
    if (/\d/.test(m[0]) && m[0].length >= 6) push('ip_address', m.index, m.index + m[0].length, 0.8, 'pattern.ipv6');
  }

  DATE_RE.lastIndex = 0;
  while ((m = DATE_RE.exec(text))) {
    if (m[1] !== undefined && !plausibleNumericDate(m[0])) continue;
    const isDob = DOB_LABEL.test(text.slice(Math.max(0, m.index - 32), m.index));
    push(isDob ? 'dob' : 'date', m.index, m.index + m[0].length, isDob ? 0.95 : 0.85, isDob ? 'pattern.dob' : 'pattern.date');
  }
  AGE_RE.lastIndex = 0;
  while ((m = AGE_RE.exec(text))) push('age_over_89', m.index, m.index + m[0].length, 0.85, 'pattern.age');

  ADDRESS_RE.lastIndex = 0;
  while ((m = ADDRESS_RE.exec(text))) push('address', m.index, m.index + m[0].length, 0.85, 'pattern.address');
  ZIP_STATE_RE.lastIndex = 0;
  while ((m = ZIP_STATE_RE.exec(text))) {
    const start = m.index + m[0].length - m[1]!.length;
    push('zip', start, start + m[1]!.length, 0.85, 'pattern.zip');
  }
  ZIP_LABEL_RE.lastIndex = 0;
  while ((m = ZIP_LABEL_RE.exec(text))) {
    const start = m.index + m[0].length - m[1]!.length;
    push('zip', start, start + m[1]!.length, 0.9, 'pattern.zip_labelled');
  }

  LABELLED_RE.lastIndex = 0;
  while ((m = LABELLED_RE.exec(text))) {
    const g = m.groups!;
    const value = g['value']!;
    let type: FindingType = 'other_id';
    for (const k in LABEL_TYPE) {
      if (g[k] !== undefined) {
        type = LABEL_TYPE[k]!;
        break;
      }
    }
    const start = m.index + m[0].length - value.length;
    push(type, start, start + value.length, 0.92, `label.${type}`);
  }
  for (const re of ctx.mrnPatterns) {
    re.lastIndex = 0;
    while ((m = re.exec(text))) {
      if (m[0].length === 0) {
        re.lastIndex++;
        continue;
      }
      push('mrn', m.index, m.index + m[0].length, 0.9, 'org.mrn_pattern');
    }
  }
  MBI_RE.lastIndex = 0;
  while ((m = MBI_RE.exec(text))) push('health_plan_id', m.index, m.index + m[0].length, 0.8, 'pattern.mbi');
  VIN_RE.lastIndex = 0;
  while ((m = VIN_RE.exec(text))) push('vehicle_id', m.index, m.index + m[0].length, 0.7, 'pattern.vin');

  ICD10_RE.lastIndex = 0;
  while ((m = ICD10_RE.exec(text))) push('icd10', m.index, m.index + m[0].length, 0.9, 'pattern.icd10');
  ICD10_CUED_RE.lastIndex = 0;
  while ((m = ICD10_CUED_RE.exec(text))) {
    const start = m.index + m[0].length - m[1]!.length;
    push('icd10', start, start + m[1]!.length, 0.85, 'pattern.icd10_labelled');
  }
};

/** 03/14/1962 or 14.03.62: one part is a month (1-12) and the other a day (1-31). */
const plausibleNumericDate = (s: string) => {
  const [a, b] = s.split(/[/.-]/).map(Number) as [number, number];
  return a >= 1 && b >= 1 && ((a <= 12 && b <= 31) || (b <= 12 && a <= 31));
};

/** Compiles organisation MRN formats with word boundaries; invalid sources throw (validate at the edge). */
export const compileMrnPatterns = (patterns: readonly (string | RegExp)[]): RegExp[] =>
  patterns.map((p) => new RegExp(`\\b(?:${typeof p === 'string' ? p : p.source})\\b`, typeof p === 'string' ? 'g' : p.flags.includes('g') ? p.flags : `${p.flags}g`));

export const normalisePhones = (phones: readonly string[]) => new Set(phones.map(phoneDigits));
