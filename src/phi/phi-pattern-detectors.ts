import type { FindingType } from './phi-types.js';

/**
 * Regular-expression detectors for the Safe Harbor identifiers that have a
 * shape (45 CFR 164.514(b)(2)(i)): numbers, dates, addresses, links. The
 * patterns are sticky and tried only where the word pass finds a word that
 * can begin them (see CUE), so the text is walked once; context checks look
 * at a few characters around a match only.
 */

export type PatternContext = {
  orgPhones: ReadonlySet<string>;
  orgDomains: readonly string[];
  mrnPatterns: readonly RegExp[];
  /** Keys ("1200 beacon") and ZIP codes of the organisation's own addresses. */
  orgAddressKeys: ReadonlySet<string>;
  orgZips: ReadonlySet<string>;
};

/**
 * Where the word pass calls the patterns (bits of `CUE`): each pattern runs
 * as a sticky match at the words that can begin it (a digit, a capitalised
 * code, a state abbreviation, a month, "age", "zip", "Dx", a label such as
 * "MRN"), never as a scan of the whole text. The text is walked once.
 */
export const CUE = { digit: 1, upperDigit: 2, state: 4, month: 8, age: 16, zipWord: 32, icdCue: 64, label: 128 } as const;

export type Push = (type: FindingType, start: number, end: number, confidence: number, detector: string) => void;

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

const SSN_LABEL = /(?:ssn|social security(?: number| no\.?| #)?|ss#)\s*[:#]?\s*(?:is\s*)?$/i;

const PHONE_LABEL = /(?:phone|tel|telephone|cell|mobile|call|callback|call back|text|fax|contact number|reach me|ph)\b[^\n]{0,14}$/i;
// Toll-free numbers (NANP 8XX) belong to businesses: insurers, pharmacies, benefit lines.
const TOLL_FREE = /^(?:800|833|844|855|866|877|888)/;
const FAX_LABEL = /fax/i;

// --- email (F), URL (N), IP (O) ------------------------------------------
const EMAIL_Y = /[A-Za-z0-9][A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b/y;
const isAsciiAlnum = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
const isLocalPartChar = (c: number) => isAsciiAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45;
const URL_RE = /\b(?:https?:\/\/|www\.)[^\s<>"'()[\]{}]+/gi;
const IPV6_RE = /\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:?){1,6}\b/gi;

// --- dates (C) ------------------------------------------------------------
const MONTH =
  '(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)';
const DOB_LABEL = /(?:\bdob|d\.o\.b\.?|date of birth|birth\s?date|born(?: on)?|birthday)\s*(?:is|was)?\s*[:\-–]?\s*$/i;

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
const ZIP_LABEL_RE = /\b(?:zip(?:\s?code)?|postal code)\s*[:#]?\s*(\d{5}(?:-\d{4})?)\b/gi;

// --- labelled identifiers (H, I, J, K, L, M, R) -----------------------------
const NUM = '(?:number|num\\.?|no\\.?|#|id)';
// Sticky: tried only where the word pass sees a label's first word (LABEL_HEADS), not at every position.
const LABELLED_RE = new RegExp(
  '(?:' +
    [
      `(?<mrn>mrn|mr\\s?#|medical record(?:s)?(?:\\s?${NUM})?|med(?:ical)? rec(?:ord)?\\s?${NUM}?|chart(?:\\s?${NUM})?|hospital\\s?${NUM}|patient\\s?(?:id|number|no\\.?|#))`,
      `(?<plan>member\\s?${NUM}|subscriber\\s?${NUM}|policy\\s?${NUM}|insurance\\s?${NUM}|medicare\\s(?:beneficiary\\s(?:identifier|${NUM})|${NUM})|mbi|medicaid\\s?${NUM}|health plan\\s?${NUM}|beneficiary\\s?${NUM})`,
      `(?<acct>(?:patient |billing |guarantor )?account\\s?${NUM}|acct\\.?(?:\\s?${NUM})?|guarantor\\s?${NUM})`,
      `(?<lic>driver['’]?s licen[cs]e(?:\\s?${NUM})?|dl\\s?#|licen[cs]e\\s?${NUM}|certificate\\s?${NUM}|birth certificate(?:\\s?${NUM})?|passport(?:\\s?${NUM})?)`,
      `(?<veh>vin|vehicle identification number|licen[cs]e plate(?:\\s?${NUM})?|plate\\s?${NUM})`,
      `(?<dev>serial\\s?${NUM}|s\\/n|device\\s(?:id|serial|identifier)(?:\\s?${NUM})?|udi|implant\\s(?:id|serial)|(?:pump|pacemaker|defibrillator|monitor|meter)\\sserial(?:\\s?${NUM})?)`,
      `(?<other>rx\\s?(?:${NUM})?|prescription\\s?${NUM}|claim\\s?${NUM}|case\\s?${NUM}|encounter\\s?${NUM}|accession\\s?${NUM}|visit\\s?${NUM}|referral\\s?${NUM}|(?:prior\\s)?authori[sz]ation\\s?${NUM}|prior auth\\s?#)`,
    ].join('|') +
    ')(?:(?<=#)|(?![a-z]))\\s*(?:is\\s+)?[:#]?\\s*(?:is\\s+)?(?<value>(?=[A-Z0-9-]*\\d)[A-Z0-9](?:[A-Z0-9-]{1,22}[A-Z0-9])?)(?![\\w-])',
  'iy',
);
/** First words (lower case) of the labels above. */
export const LABEL_HEADS: ReadonlySet<string> = new Set(
  (
    'mrn mr medical med chart hospital patient member subscriber policy insurance medicare mbi medicaid health beneficiary ' +
    "account acct guarantor billing driver driver's dl license licence certificate birth passport vin vehicle plate serial s " +
    'device udi implant pump pacemaker defibrillator monitor meter rx prescription claim case encounter accession visit ' +
    'referral authorization authorisation prior'
  ).split(' '),
);

/** Lower-case words at which the word pass calls the patterns, with their CUE bits. */
export const PATTERN_CUE_WORDS: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  const add = (words: string, bit: number) => {
    for (const w of words.split(' ')) m.set(w, (m.get(w) ?? 0) | bit);
  };
  add(
    'jan january feb february mar march apr april may jun june jul july aug august sep sept september oct october nov november dec december',
    CUE.month,
  );
  add('age aged ages', CUE.age);
  add('zip postal', CUE.zipWord);
  add('icd icd-10 icd-10-cm dx diagnosis', CUE.icdCue);
  for (const w of LABEL_HEADS) m.set(w, (m.get(w) ?? 0) | CUE.label);
  return m;
})();

/** Tries the labelled-identifier pattern at `start` (the first letter of a label word). */
export const scanLabelAt = (text: string, start: number, push: Push) => {
  // Every value has a digit within a label's length: most label words ("patient", "account") have none after them.
  const stop = Math.min(text.length, start + 64);
  let k = start;
  while (k < stop && !isDigit(text.charCodeAt(k))) k++;
  if (k === stop) return;
  LABELLED_RE.lastIndex = start;
  const m = LABELLED_RE.exec(text);
  if (!m) return;
  const g = m.groups!;
  const value = g['value']!;
  let type: FindingType = 'other_id';
  for (const k in LABEL_TYPE) {
    if (g[k] !== undefined) {
      type = LABEL_TYPE[k]!;
      break;
    }
  }
  const vs = m.index + m[0].length - value.length;
  push(type, vs, vs + value.length, 0.92, `label.${type}`);
};
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

const ICD10_CUED_RE = /\b(?:icd-?10(?:-cm)?(?:\scode)?|dx(?:\scode)?|diagnosis code)\s*[:#]?\s*([A-TV-Z]\d[0-9AB][0-9A-Z]{0,4})\b/gi;
const ICD10_CONTEXT = /\b(?:icd|dx|diagnos[ie]s|assessment|impression|problem)\b/i;

const phoneDigits = (s: string) => {
  const d = s.replace(/\D/g, '');
  return d.length === 11 && d.startsWith('1') ? d.slice(1) : d;
};

const domainIsOrg = (domain: string, orgDomains: readonly string[]) => {
  const d = domain.toLowerCase();
  return orgDomains.some((o) => d === o || d.endsWith(`.${o}`));
};

const trimUrl = (s: string) => s.replace(/[.,;:!?]+$/, '');

const isHex = (c: number) => (c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);

/** An IPv6 address has two colons within five characters, hex digits around; most texts have none, so the IPv6 pattern is skipped. */
const mayHoldIpv6 = (text: string) => {
  for (let k = text.indexOf(':'); k > 0 && k + 1 < text.length; k = text.indexOf(':', k + 1)) {
    const next = text.indexOf(':', k + 1);
    if (
      next > 0 &&
      next - k <= 5 &&
      (isHex(text.charCodeAt(k - 1)) || text.charCodeAt(k + 1) === 58) &&
      isHex(text.charCodeAt(next - 1) === 58 ? 48 : text.charCodeAt(next - 1))
    )
      return true;
  }
  return false;
};

/** Runs `fn` on every match of a global `re` (empty matches advance, so no pattern can loop). */
const each = (re: RegExp, text: string, fn: (m: RegExpExecArray) => void) => {
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) re.lastIndex++;
    else fn(m);
  }
};

const sticky = (re: RegExp, text: string, at: number) => {
  re.lastIndex = at;
  return re.exec(text);
};

// Sticky forms, tried at cue positions only. Case-sensitive unless marked; named groups say what matched.
const DIGIT_Y = new RegExp(
  [
    '(?<ssn>(?!000|666|9\\d\\d)\\d{3}(?<s1>[- ])(?!00)\\d{2}\\k<s1>(?!0000)\\d{4}\\b)',
    '(?<phone>(?<![\\w-])(?:\\+?1[\\s.-]?)?(?:\\(\\d{3}\\)\\s?|\\d{3}[\\s.-])\\d{3}[\\s.-]\\d{4}(?:\\s*(?:[xX]|[Ee]xt\\.?|[Ee]xtension)\\s*\\d{1,5})?(?![\\w-]))',
    '(?<intl>(?<![\\w+])\\+(?:4[0-9]|3[0-9]|[2-9]\\d)[\\s.-]?\\d{1,4}(?:[\\s.-]?\\d{2,4}){2,4}(?![\\w-]))',
    '(?<run>(?<![\\w-])\\+?\\d{9,11}(?![\\w-]))',
    '(?<ipv4>(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(?:\\.(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3}\\b)',
    '(?<daten>\\d{4}-\\d{1,2}-\\d{1,2}\\b|\\d{1,2}(?<s2>[/.-])\\d{1,2}\\k<s2>(?:\\d{4}|\\d{2})\\b)',
    `(?<datem>\\d{1,2}(?:st|nd|rd|th)?\\s+(?:of\\s+)?${MONTH}\\.?(?:,?\\s+\\d{4})?\\b)`,
    '(?<age>(?:9\\d|1[01]\\d)[\\s-]*(?:[Yy]ears?|[Yy]rs?|[Yy]\\/[Oo]|[Yy][Oo])(?:[\\s-]*old)?\\b)',
    `(?<address>${ADDRESS_RE.source.slice(2)})`,
    `(?<mbi>${MBI_RE.source.slice(2)})`,
    '(?<vin>[A-HJ-NPR-Z0-9]{17}\\b)',
  ].join('|'),
  'y',
);
const UPPER_Y = /(?<vin>[A-HJ-NPR-Z0-9]{17}\b)|(?<icd>[A-TV-Z]\d[0-9AB](?<dot>\.[0-9A-Z]{1,4})?\b)/y;
const STATE_Y = new RegExp(`(?:${STATES}),?\\s+(\\d{5}(?:-\\d{4})?)\\b`, 'y');
const MONTH_Y = new RegExp(`${MONTH}\\.?\\s+\\d{1,2}(?:st|nd|rd|th)?(?:,?\\s+\\d{4})?\\b`, 'y');
const AGE_WORD_Y = /(?:age[ds]?|aged)\s*:?\s*(?:9\d|1[01]\d)\b/iy;
const ZIP_LABEL_Y = new RegExp(ZIP_LABEL_RE.source.slice(2), 'iy');
const ICD10_CUED_Y = new RegExp(ICD10_CUED_RE.source.slice(2), 'iy');

/** SSA: area 000, 666 and 900-999, group 00 and serial 0000 are never issued. */
const ssnIssuable = (d: string) => !/^(?:000|666|9)/.test(d) && d.slice(3, 5) !== '00' && d.slice(5) !== '0000';

/**
 * The pattern detectors for one text. The word pass calls `at(cue, start)`
 * at each cue word; `finish()` then runs the few patterns that are found by
 * a character instead ('@' for e-mail, '://' for links, ':' for IPv6) and the
 * organisation's own MRN formats. A class, so that no closures are made per message.
 */
export class PatternScan {
  private covered = -1;
  private orgAddressEnd = -1;

  constructor(
    private readonly text: string,
    private readonly ctx: PatternContext,
    private readonly push: Push,
  ) {}

  private phone(start: number, end: number, confidence: number, detector: string) {
    const d = phoneDigits(this.text.slice(start, end).replace(/\s*(?:x|ext\.?|extension)\s*\d+$/i, ''));
    if (this.ctx.orgPhones.has(d) || (d.length === 10 && TOLL_FREE.test(d))) return;
    const isFax = FAX_LABEL.test(labelBefore(this.text, start, 24));
    this.push(isFax ? 'fax' : 'phone', start, end, confidence, detector);
  }

  private date(start: number, end: number, numericSep: string | undefined) {
    const text = this.text;
    if (numericSep !== undefined && !plausibleNumericDate(text.slice(start, end))) return;
    // "8.3.19.4" is a version number, not a date.
    if (numericSep === '.' && text.charCodeAt(end) === 46 && isDigit(text.charCodeAt(end + 1))) return;
    if (start >= 2 && text.charCodeAt(start - 1) === 46 && isDigit(text.charCodeAt(start - 2))) return;
    const isDob = DOB_LABEL.test(text.slice(Math.max(0, start - 32), start));
    this.push(isDob ? 'dob' : 'date', start, end, isDob ? 0.95 : 0.85, isDob ? 'pattern.dob' : 'pattern.date');
  }

  private digitMatch(pos: number): boolean {
    const text = this.text;
    const m = sticky(DIGIT_Y, text, pos);
    if (!m) return false;
    const g = m.groups!;
    const start = m.index;
    const end = start + m[0].length;
    this.covered = end;
    if (g['ssn'] !== undefined) this.push('ssn', start, end, 0.95, 'pattern.ssn');
    else if (g['phone'] !== undefined) this.phone(start, end, 0.9, 'pattern.phone');
    else if (g['intl'] !== undefined) {
      if (!m[0].startsWith('+1')) this.phone(start, end, 0.75, 'pattern.phone_intl');
    } else if (g['run'] !== undefined) {
      const d = m[0].replace('+', '');
      const label = labelBefore(text, start, 30);
      if (d.length === 9 && ssnIssuable(d) && SSN_LABEL.test(label)) this.push('ssn', start, end, 0.9, 'pattern.ssn_labelled');
      else if ((d.length === 10 || (d.length === 11 && d.startsWith('1'))) && PHONE_LABEL.test(label))
        this.phone(start, end, 0.8, 'pattern.phone_labelled');
    } else if (g['ipv4'] !== undefined) {
      // "version 10.2.14.3" and "v10.2.14.3" are software versions, not addresses.
      if (!/(?:\bv|version\s?|build\s?|release\s?)$/i.test(text.slice(Math.max(0, start - 8), start)))
        this.push('ip_address', start, end, 0.85, 'pattern.ipv4');
    } else if (g['daten'] !== undefined) this.date(start, end, g['s2']);
    else if (g['datem'] !== undefined) this.date(start, end, undefined);
    else if (g['age'] !== undefined) this.push('age_over_89', start, end, 0.85, 'pattern.age');
    else if (g['address'] !== undefined) {
      // The organisation's own address (a clinic location) is not the patient's.
      if (this.ctx.orgAddressKeys.has(addressKey(m[0]))) this.orgAddressEnd = end;
      else this.push('address', start, end, 0.85, 'pattern.address');
    } else if (g['mbi'] !== undefined) this.push('health_plan_id', start, end, 0.8, 'pattern.mbi');
    // Unlabelled, only a VIN whose check digit holds (49 CFR 565.15); labelled ones come from the label pattern.
    else if (g['vin'] !== undefined && vinCheckDigitOk(m[0])) this.push('vehicle_id', start, end, 0.8, 'pattern.vin');
    return true;
  }

  /** Runs the patterns that can begin at `s`, a word of kind `cue` (CUE bits). */
  at(cue: number, s: number) {
    const text = this.text;
    const push = this.push;
    if (cue & CUE.digit) {
      if (s < this.covered) return;
      // A clock time ("10:30") begins no pattern.
      if (text.charCodeAt(s + 1) === 58 || text.charCodeAt(s + 2) === 58) return;
      // "(617) 555-0142" and "+1 617 ..." begin one character before their first digit.
      const p = s > 0 ? text.charCodeAt(s - 1) : 0;
      if ((p === 40 || p === 43) && this.digitMatch(s - 1)) return;
      this.digitMatch(s);
      return;
    }
    if (cue & CUE.upperDigit) {
      const m = sticky(UPPER_Y, text, s);
      if (m) {
        const g = m.groups!;
        if (g['vin'] !== undefined) {
          if (vinCheckDigitOk(m[0])) push('vehicle_id', s, s + 17, 0.8, 'pattern.vin');
        }
        // Three-character categories (I10, J45) have no dot: taken only near a diagnosis cue.
        else if (g['dot'] !== undefined) push('icd10', s, s + m[0].length, 0.9, 'pattern.icd10');
        else if (ICD10_CONTEXT.test(text.slice(Math.max(0, s - 60), s))) push('icd10', s, s + m[0].length, 0.75, 'pattern.icd10_category');
      }
    }
    if (cue & CUE.state) {
      const m = sticky(STATE_Y, text, s);
      if (m) {
        const zs = m.index + m[0].length - m[1]!.length;
        const end = this.orgAddressEnd;
        if (!(this.ctx.orgZips.has(m[1]!) && end >= 0 && zs > end && zs - end < 12))
          push('zip', zs, zs + m[1]!.length, 0.85, 'pattern.zip');
      }
    }
    if (cue & CUE.month) {
      const m = sticky(MONTH_Y, text, s);
      if (m) this.date(s, s + m[0].length, undefined);
    }
    if (cue & CUE.age) {
      const m = sticky(AGE_WORD_Y, text, s);
      if (m) push('age_over_89', s, s + m[0].length, 0.85, 'pattern.age');
    }
    if (cue & CUE.zipWord) {
      const m = sticky(ZIP_LABEL_Y, text, s);
      if (m) {
        const zs = m.index + m[0].length - m[1]!.length;
        push('zip', zs, zs + m[1]!.length, 0.9, 'pattern.zip_labelled');
      }
    }
    if (cue & CUE.icdCue) {
      const m = sticky(ICD10_CUED_Y, text, s);
      if (m) {
        const cs = m.index + m[0].length - m[1]!.length;
        push('icd10', cs, cs + m[1]!.length, 0.85, 'pattern.icd10_labelled');
      }
    }
    if (cue & CUE.label) scanLabelAt(text, s, push);
  }

  /** The patterns found by a character rather than a word, and the organisation's MRN formats. */
  finish() {
    const { text, ctx, push } = this;
    // E-mail: from each '@', back over the local part, then the pattern from there.
    let lastEnd = 0;
    for (let atSign = text.indexOf('@'); atSign > 0; atSign = text.indexOf('@', atSign + 1)) {
      let start = atSign;
      while (start > lastEnd && isLocalPartChar(text.charCodeAt(start - 1))) start--;
      while (start < atSign && !isAsciiAlnum(text.charCodeAt(start))) start++;
      const m = start < atSign ? sticky(EMAIL_Y, text, start) : null;
      if (!m) continue;
      lastEnd = start + m[0].length;
      // Staff and role addresses of the organisation itself are not the patient's.
      if (!domainIsOrg(m[1]!, ctx.orgDomains)) push('email', start, lastEnd, 0.95, 'pattern.email');
    }
    if (text.includes('://') || text.includes('www.') || text.includes('WWW.')) {
      each(URL_RE, text, (m) => {
        const u = trimUrl(m[0]);
        const host = /^(?:https?:\/\/)?([^/:?#]+)/i.exec(u)?.[1] ?? '';
        const rest = u.slice(u.toLowerCase().indexOf(host.toLowerCase()) + host.length);
        // A plain link to the organisation's site is not PHI; one carrying an id, token or query may be.
        if (domainIsOrg(host, ctx.orgDomains) && !/[?#=]|\d{3,}|[A-Za-z0-9_-]{20,}/.test(rest)) return;
        push('url', m.index, m.index + u.length, 0.9, 'pattern.url');
      });
    }
    if (mayHoldIpv6(text)) {
      each(IPV6_RE, text, (m) => {
        if (/\d/.test(m[0]) && m[0].length >= 6) push('ip_address', m.index, m.index + m[0].length, 0.8, 'pattern.ipv6');
      });
    }
    for (const re of ctx.mrnPatterns) each(re, text, (m) => push('mrn', m.index, m.index + m[0].length, 0.9, 'org.mrn_pattern'));
  }
}

const isDigit = (c: number) => c >= 48 && c <= 57;

const VIN_VALUES: Record<string, number> = {
  A: 1,
  B: 2,
  C: 3,
  D: 4,
  E: 5,
  F: 6,
  G: 7,
  H: 8,
  J: 1,
  K: 2,
  L: 3,
  M: 4,
  N: 5,
  P: 7,
  R: 9,
  S: 2,
  T: 3,
  U: 4,
  V: 5,
  W: 6,
  X: 7,
  Y: 8,
  Z: 9,
};
const VIN_WEIGHTS = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
/** 49 CFR 565.15: position 9 is the weighted sum mod 11 (10 written X). */
export const vinCheckDigitOk = (vin: string) => {
  let sum = 0;
  for (let i = 0; i < 17; i++) {
    const ch = vin[i]!;
    const v = isDigit(ch.charCodeAt(0)) ? Number(ch) : VIN_VALUES[ch];
    if (v === undefined) return false;
    sum += v * VIN_WEIGHTS[i]!;
  }
  const r = sum % 11;
  return vin[8] === (r === 10 ? 'X' : String(r));
};

/** 03/14/1962 or 14.03.62: one part is a month (1-12) and the other a day (1-31). */
const plausibleNumericDate = (s: string) => {
  const [a, b] = s.split(/[/.-]/).map(Number) as [number, number];
  return a >= 1 && b >= 1 && ((a <= 12 && b <= 31) || (b <= 12 && a <= 31));
};

/** Compiles organisation MRN formats with word boundaries; invalid sources throw (validate at the edge). */
export const compileMrnPatterns = (patterns: readonly (string | RegExp)[]): RegExp[] =>
  patterns.map(
    (p) =>
      new RegExp(
        `\\b(?:${typeof p === 'string' ? p : p.source})\\b`,
        typeof p === 'string' ? 'g' : p.flags.includes('g') ? p.flags : `${p.flags}g`,
      ),
  );

/** "1200 Beacon Street, Quincy" -> "1200 beacon": house number and first street word identify an address well enough. */
export const addressKey = (s: string) => {
  const m = /(\d{1,6}[A-Za-z]?)\s+(?:[NSEW]\.?\s+)?([A-Za-z0-9]+)/.exec(s);
  return m ? `${m[1]!.toLowerCase()} ${m[2]!.toLowerCase()}` : '';
};

export const normalisePhones = (phones: readonly string[]) => new Set(phones.map(phoneDigits));
