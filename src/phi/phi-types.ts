/**
 * Shapes shared by the PHI detectors, the policy and the evaluation. A finding
 * holds a type, offsets and a confidence, never the matched text, so findings
 * can be stored, logged and shown to reviewers without copying PHI
 * (45 CFR 164.502(b), minimum necessary).
 */

/** The 18 Safe Harbor identifiers of 45 CFR 164.514(b)(2)(i) that can appear in text, one type each (biometrics cannot). */
export const IDENTIFIER_TYPES = [
  'name', // (A)
  'address', // (B) street address and city
  'zip', // (B) ZIP codes
  'date', // (C) dates tied to a person: admission, discharge, death, appointment, service
  'dob', // (C) date of birth
  'age_over_89', // (C) ages over 89
  'phone', // (D)
  'fax', // (E)
  'email', // (F)
  'ssn', // (G)
  'mrn', // (H)
  'health_plan_id', // (I)
  'account_number', // (J)
  'license_number', // (K) certificate and licence numbers
  'vehicle_id', // (L)
  'device_id', // (M)
  'url', // (N)
  'ip_address', // (O)
  'possible_full_face_photo', // (Q)
  'other_id', // (R) any other unique identifying number
] as const;

/** Clinical content: not an identifier, but what turns identifiers into PHI worth holding. */
export const CLINICAL_TYPES = ['icd10', 'medication', 'diagnosis', 'lab_value'] as const;

/** 42 CFR Part 2: substance-use-disorder content, its own category, always held. */
export const PART2_TYPES = ['part2'] as const;

export type IdentifierType = (typeof IDENTIFIER_TYPES)[number];
export type ClinicalType = (typeof CLINICAL_TYPES)[number];
export type FindingType = IdentifierType | ClinicalType | (typeof PART2_TYPES)[number];

export const FINDING_TYPES: readonly FindingType[] = [...IDENTIFIER_TYPES, ...CLINICAL_TYPES, ...PART2_TYPES];

export type FindingField = 'subject' | 'text' | 'html' | 'attachment' | 'attachment_name';

export type Finding = {
  type: FindingType;
  /** UTF-16 offsets into the scanned field: [start, end). For html, offsets into the original markup. */
  start: number;
  end: number;
  /** 0..1: how sure the detector is that this span is the type. */
  confidence: number;
  /** Which detector produced it (for reviewers and tuning). */
  detector: string;
  /** Set by scanMessage: where the span is. */
  field?: FindingField;
  /** Set by scanMessage for attachment findings: index into `attachments`. */
  attachment?: number;
};

export const SENSITIVITIES = ['none', 'low', 'moderate', 'high', 'restricted'] as const;
export type Sensitivity = (typeof SENSITIVITIES)[number];

export type Category = 'identifier' | 'clinical' | 'part2';

export type ScanResult = { findings: Finding[]; sensitivity: Sensitivity; categories: Category[] };

/** What the organisation tells the detector (none of it is required). */
export type ScanOptions = {
  /** Full names of the organisation's contacts (patients, relatives); matched case-sensitively on capitalised words. */
  contacts?: readonly string[];
  /** Organisation MRN formats, e.g. `GH-?\d{7}` (source of a RegExp; word boundaries are added). */
  mrnPatterns?: readonly (string | RegExp)[];
  /** The organisation's own phone and fax numbers (main lines): not PHI. Any format; digits are compared. */
  orgPhones?: readonly string[];
  /** The organisation's own street addresses ("1200 Beacon Street, Quincy, MA 02169"): not PHI. */
  orgAddresses?: readonly string[];
  /** The organisation's own domains: staff addresses and plain links there are not PHI. */
  orgDomains?: readonly string[];
  /** Findings below this confidence are dropped (default 0.5). */
  minConfidence?: number;
};

export const isIdentifier = (t: FindingType): t is IdentifierType => (IDENTIFIER_TYPES as readonly string[]).includes(t);
export const isClinical = (t: FindingType): t is ClinicalType => (CLINICAL_TYPES as readonly string[]).includes(t);
