import { scanText } from './phi-scanner.js';
import { type ScanOptions, SENSITIVITIES, type Sensitivity } from './phi-types.js';

/**
 * Routing tags for inbound mail, as data (a table of tag and pattern, like
 * ZoneMTA's bounce rules): adding a tag is adding a row.
 */
export const INBOUND_RULES: readonly { tag: string; re: RegExp }[] = [
  {
    tag: 'urgent',
    re: /\b(?:urgent|asap|emergency|immediately|right away|severe|chest pain|can'?t breathe|trouble breathing|suicid\w*|overdos\w*|stat)\b/i,
  },
  { tag: 'prescription', re: /\b(?:refills?|prescriptions?|rx|pharmacy|medication|meds|dosage|dose|pills?|tablets?|renew(?:al)?)\b/i },
  { tag: 'billing', re: /\b(?:bill(?:s|ing|ed)?|invoice|statement|balance|payment|pay|charge[sd]?|copay|co-pay|deductible|refund|owe)\b/i },
  {
    tag: 'insurance',
    re: /\b(?:insurance|insurer|coverage|member id|policy|prior auth\w*|pre-?authori[sz]ation|eob|explanation of benefits|medicare|medicaid)\b/i,
  },
  { tag: 'referral', re: /\b(?:referr(?:al|ed|ing)|refer|specialist|consult(?:ation)?)\b/i },
  {
    tag: 'results',
    re: /\b(?:results?|lab(?:s|oratory)?|test(?:s|ing)?|imaging|x-?ray|mri|ct scan|biopsy|pathology|a1c|cholesterol|blood work)\b/i,
  },
  {
    tag: 'appointment',
    re: /\b(?:appointments?|appt|schedul(?:e|ed|ing)|reschedul\w*|cancel\w*|book(?:ing)?|visit|check-?in|availability)\b/i,
  },
  {
    tag: 'records_request',
    re: /\b(?:medical records?|records request|copy of my (?:records|chart)|release of information|roi form|hipaa authori[sz]ation)\b/i,
  },
];

/**
 * Category tags for an inbound message (prescription, billing, urgent,
 * referral, results, appointment, insurance, records_request), plus `phi`
 * when the PHI scan rates it moderate or above and `part2` for
 * substance-use-disorder content. Pure; the message is not stored or logged here.
 * `known`: the sensitivity of a scan the caller already made (the receiving
 * path scans the whole message, attachments included), so the text is not scanned twice.
 */
export const classifyInbound = (text: string, options?: ScanOptions, known?: Sensitivity): string[] => {
  const tags = INBOUND_RULES.filter((r) => r.re.test(text)).map((r) => r.tag);
  const sensitivity = known ?? scanText(text, options).sensitivity;
  if (SENSITIVITIES.indexOf(sensitivity) >= SENSITIVITIES.indexOf('moderate')) tags.push('phi');
  if (sensitivity === 'restricted') tags.push('part2');
  return tags;
};
