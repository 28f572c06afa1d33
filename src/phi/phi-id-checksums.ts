/**
 * Sensitive identifiers recognised without a label, by their public check digits (LABELING.md H2).
 *
 * A number with a valid check digit in a documented national format is very unlikely to be anything else: South
 * African ID numbers (date of birth + Luhn), India's Aadhaar (Verhoeff), Singapore's NRIC and FIN (the weighted
 * check letter), Australia's Medicare card (the weighted check digit, optional issue number and IRN) and IHI
 * (prefix 800360 + Luhn), British Columbia's PHN (mod 11) and Ontario's health number (Luhn, with its optional
 * version code). Québec's RAMQ number has no public check digit: only its structure (four letters, a valid birth
 * month and day) is checked, and it counts only in health-care mail like every other format here (phi-context.ts).
 *
 * The South African ID, Aadhaar and BC PHN checks come from `stdnum` (a port of python-stdnum); Luhn from its checksum
 * helpers. stdnum has no Australian Medicare, IHI, Singapore NRIC/FIN or Ontario health number, so those few lines
 * follow the published definitions here (the tests check each against vectors built by the definition).
 */
import { stdnum } from 'stdnum';
import { luhnChecksumValidate } from 'stdnum/lib/cjs/util/checksum.js';

/** The type the rules record for an identifier found by its check digits. */
export type ChecksumIdType = 'ssn' | 'mrn' | 'health_plan_id';

/** The formats, by name: what a test or a reviewer can look up. */
export type ChecksumFormat = 'za_id' | 'aadhaar' | 'sg_nric' | 'au_medicare' | 'au_ihi' | 'ca_bc_phn' | 'ca_on_health' | 'ca_qc_ramq';

const digitsOnly = (s: string) => s.replace(/[^0-9]/g, '');

/** Australian Medicare: ten digits (eight, a check digit, the card's issue number), first 2 to 6; an 11th digit is the IRN. */
export const validMedicare = (value: string): boolean => {
  const d = digitsOnly(value);
  if ((d.length !== 10 && d.length !== 11) || d[0]! < '2' || d[0]! > '6') return false;
  if (d.length === 11 && d[10] === '0') return false;
  const w = [1, 3, 7, 9, 1, 3, 7, 9];
  let sum = 0;
  for (let i = 0; i < 8; i++) sum += Number(d[i]) * w[i]!;
  return sum % 10 === Number(d[8]);
};

/** Australian Individual Healthcare Identifier: 16 digits, 800360 for a person, Luhn. */
export const validIhi = (value: string): boolean => {
  const d = digitsOnly(value);
  return d.length === 16 && d.startsWith('800360') && luhnChecksumValidate(d);
};

/** Singapore NRIC/FIN (S, T, F, G series): seven digits weighted 2,7,6,5,4,3,2, plus 4 for T and G, mod 11 names the letter. */
export const validNric = (value: string): boolean => {
  const v = value.replace(/[\s-]/g, '').toUpperCase();
  const m = /^([STFG])(\d{7})([A-Z])$/.exec(v);
  if (!m) return false;
  const w = [2, 7, 6, 5, 4, 3, 2];
  let sum = m[1] === 'T' || m[1] === 'G' ? 4 : 0;
  for (let i = 0; i < 7; i++) sum += Number(m[2]![i]) * w[i]!;
  const letters = m[1] === 'S' || m[1] === 'T' ? 'JZIHGFEDCBA' : 'XWUTRQPNMLK';
  return letters[sum % 11] === m[3];
};

/** Ontario health number: ten digits, Luhn over all ten; the version code (one or two letters) is not checked. */
export const validOntarioHealth = (value: string): boolean => {
  const d = digitsOnly(value);
  return d.length === 10 && d[0] !== '0' && luhnChecksumValidate(d);
};

/** Québec RAMQ: four letters, then YY, MM (plus 50 for women), DD and two digits; no public check digit. */
export const validRamqStructure = (value: string): boolean => {
  const m = /^[A-Z]{4}(\d{2})(\d{2})(\d{2})\d{2}$/.exec(value.replace(/[\s-]/g, '').toUpperCase());
  if (!m) return false;
  const month = Number(m[2]) > 50 ? Number(m[2]) - 50 : Number(m[2]);
  const day = Number(m[3]);
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
};

export const validZaId = (value: string): boolean => stdnum.ZA!.idnr!.validate(digitsOnly(value)).isValid;
export const validAadhaar = (value: string): boolean => {
  const d = digitsOnly(value);
  return d.length === 12 && stdnum.IN!.aadhaar!.validate(d).isValid;
};
export const validBcPhn = (value: string): boolean => {
  const d = digitsOnly(value);
  return d.length === 10 && d[0] === '9' && stdnum.CA!.bc_bhn!.validate(d).isValid;
};

/**
 * Candidates: digit groups (10 to 16 digits, spaces or dashes between, an optional version code), NRIC-shaped
 * letter-digits-letter, RAMQ-shaped letters-digits. One pass; the checks run only on what matched.
 */
const CANDIDATE_RE =
  /\b(?:([STFGstfg][ -]?\d{3}[ -]?\d{4}[ -]?[A-Za-z])|([A-Z]{4}[ -]?\d{4}[ -]?\d{4})|(\d(?:[ -]?\d){9,15})(?:[ -]([A-Z]{1,2}))?)(?![\w/-])/g;
/** A phone, fax or other non-patient label just before the number (LABELING.md P4). */
const NOT_BEFORE_RE =
  /\b(?:tel|phone|ph|call|fax|mobile|mob|cell|text|sms|whatsapp|order|invoice|inv|ref|reference|ticket|tracking|booking|reservation|receipt|serial|card ending|mortgage|loan|po)\b[^\d\n]{0,16}$/i;

/**
 * The digit grouping of a candidate, e.g. "4-3-3" for "5281 406 735": the lengths of the parts between spaces and
 * dashes (as `s.split(/[ -]/)` would cut it), joined by dashes; one walk, no array of parts.
 */
const grouping = (s: string) => {
  let out = '';
  let len = 0;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c === 32 || c === 45) {
      out += `${len}-`;
      len = 0;
    } else len++;
  }
  return out + String(len);
};

/** Identifiers found by their check digits or structure, with the format that matched and the offsets. */
export const checksumIdentifiers = (text: string): { format: ChecksumFormat; type: ChecksumIdType; start: number; end: number }[] => {
  const out: { format: ChecksumFormat; type: ChecksumIdType; start: number; end: number }[] = [];
  CANDIDATE_RE.lastIndex = 0;
  for (let m = CANDIDATE_RE.exec(text); m !== null; m = CANDIDATE_RE.exec(text)) {
    const start = m.index;
    const end = start + m[0].length;
    // Part of a longer token (`x.1234...`, `ORD-1234...`, `a/1234...`): checked here, cheaper than a look-behind.
    const before = start > 0 ? text.charCodeAt(start - 1) : 0;
    if (before === 0x2e || before === 0x2f || before === 0x2d) continue;
    let format: ChecksumFormat | null = null;
    if (m[1] !== undefined) {
      if (validNric(m[1])) format = 'sg_nric';
    } else if (m[2] !== undefined) {
      if (validRamqStructure(m[2])) format = 'ca_qc_ramq';
    } else {
      const raw = m[3]!;
      const d = digitsOnly(raw);
      const g = grouping(raw);
      const code = m[4];
      if (d.length === 10) {
        if (code === undefined && (g === '10' || g === '4-5-1') && validMedicare(d)) format = 'au_medicare';
        else if (g === '4-3-3' && d[0] === '9' && validBcPhn(d)) format = 'ca_bc_phn';
        else if ((g === '4-3-3' || (g === '10' && code !== undefined)) && validOntarioHealth(d)) format = 'ca_on_health';
      } else if (d.length === 11 && code === undefined && (g === '11' || g === '4-5-1-1' || g === '4-5-2') && validMedicare(d)) {
        format = 'au_medicare';
      } else if (d.length === 12 && code === undefined && (g === '12' || g === '4-4-4') && validAadhaar(d)) format = 'aadhaar';
      else if (d.length === 13 && code === undefined && (g === '13' || g === '6-4-3' || g === '6-4-2-1') && validZaId(d)) format = 'za_id';
      else if (d.length === 16 && code === undefined && (g === '16' || g === '4-4-4-4') && validIhi(d)) format = 'au_ihi';
    }
    // The label check after the format's (both must pass; the format's is cheaper and rejects most candidates, such as
    // phone numbers, whose grouping is no identifier's).
    if (format === null || NOT_BEFORE_RE.test(text.slice(Math.max(0, start - 32), start))) continue;
    const type: ChecksumIdType =
      format === 'za_id' || format === 'aadhaar' || format === 'sg_nric' ? 'ssn' : format === 'au_medicare' ? 'health_plan_id' : 'mrn';
    out.push({ format, type, start, end });
  }
  return out;
};
