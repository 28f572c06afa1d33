import { describe, expect, it } from 'vitest';
import { vinCheckDigitOk } from './phi-pattern-detectors.js';
import { scanText } from './phi-scanner.js';
import type { ScanOptions } from './phi-types.js';

/** [type, matched text] of every finding: the test sees the text, the finding never carries it. */
const found = (text: string, options?: ScanOptions) => scanText(text, options).findings.map((f) => [f.type, text.slice(f.start, f.end)]);
const typesOf = (text: string, options?: ScanOptions) => scanText(text, options).findings.map((f) => f.type);

describe('SSN detector', () => {
  it('finds dashed, spaced and labelled bare SSNs', () => {
    expect(found('SSN 123-45-6789.')).toEqual([['ssn', '123-45-6789']]);
    expect(found('ssn: 123 45 6789')).toEqual([['ssn', '123 45 6789']]);
    expect(found('Social Security Number: 123456789')).toEqual([['ssn', '123456789']]);
  });
  it('ignores numbers the SSA never issues and unlabelled nine-digit numbers', () => {
    expect(typesOf('000-12-3456 and 666-12-3456 and 900-12-3456')).toEqual([]);
    expect(typesOf('PO 123456789 shipped')).toEqual([]);
  });
});

describe('phone and fax detector', () => {
  it('finds NANP numbers in many formats and tells fax from phone', () => {
    for (const p of ['(617) 555-0142', '617-555-0142', '617.555.0142', '+1 617 555 0142', '1-617-555-0142', '617 555 0142 ext. 12']) {
      expect(found(`Call me at ${p} today`), p).toEqual([['phone', p]]);
    }
    expect(found('Phone: 617-555-0142, Fax: 617-555-0199')).toEqual([
      ['phone', '617-555-0142'],
      ['fax', '617-555-0199'],
    ]);
    expect(found('Cell: 6175550142')).toEqual([['phone', '6175550142']]);
  });
  it('skips the organisation’s own lines, toll-free numbers, and unlabelled digit runs', () => {
    expect(typesOf('Main line (617) 555-0100', { orgPhones: ['617-555-0100'] })).toEqual([]);
    expect(typesOf('Call your plan at 1-800-555-0123.')).toEqual([]);
    expect(typesOf('Tracking 6175550142 assigned')).toEqual([]);
  });
});

describe('email, URL and IP detectors', () => {
  it('finds patient addresses and links but not staff addresses or plain links to the organisation', () => {
    const o = { orgDomains: ['mercy.example'] };
    expect(found('Write to ana.ruiz@gmail.com or scheduling@mercy.example', o)).toEqual([['email', 'ana.ruiz@gmail.com']]);
    expect(found('See https://www.mercy.example/locations.', o)).toEqual([]);
    expect(found('Results: https://portal.mercy.example/results/12345678.', o)).toEqual([
      ['url', 'https://portal.mercy.example/results/12345678'],
    ]);
    expect(found('Visit www.example.org/x?id=9 now')).toEqual([['url', 'www.example.org/x?id=9']]);
  });
  it('finds IPv4 and IPv6 addresses but not version numbers', () => {
    expect(found('sign-in from 73.142.18.201 at noon')).toEqual([['ip_address', '73.142.18.201']]);
    expect(typesOf('from 2001:db8:85a3:0:0:8a2e:370:7334')).toEqual(['ip_address']);
    expect(typesOf('client version 10.2.14.3 is out')).toEqual([]);
  });
});

describe('date detector', () => {
  it('finds dates in numeric and written forms, and dates of birth by their label', () => {
    for (const d of ['03/14/1962', '3/4/62', '1962-03-14', 'March 14, 1962', 'Mar 14, 1962', '14 March 1962', 'March 14th', 'Mar. 14']) {
      expect(found(`Seen on ${d}.`), d).toEqual([['date', d]]);
    }
    expect(found('DOB: 03/14/1962')).toEqual([['dob', '03/14/1962']]);
    expect(found('Date of birth March 14, 1962')).toEqual([['dob', 'March 14, 1962']]);
    expect(found('born 1962-03-14')).toEqual([['dob', '1962-03-14']]);
  });
  it('ignores times, blood pressures, fractions, years alone and version strings', () => {
    expect(typesOf('At 10:30 AM your BP was 128/82; take 1/2 tablet. Closed in 2025. Version 8.3.19.4.')).toEqual([]);
    expect(typesOf('13/45/2020 is not a date')).toEqual([]);
  });
  it('finds ages over 89 but not younger ages', () => {
    expect(found('a 92-year-old woman')).toEqual([['age_over_89', '92-year-old']]);
    expect(found('Age: 101')).toEqual([['age_over_89', 'Age: 101']]);
    expect(typesOf('a 72-year-old man, age 45')).toEqual([]);
  });
});

describe('address and ZIP detectors', () => {
  it('finds a street address with unit and city, and the ZIP after the state', () => {
    const text = 'Mail to: 48 Maple Avenue, Apt 3B, Fall River, MA 02720.';
    expect(found(text)).toEqual([
      ['address', '48 Maple Avenue, Apt 3B, Fall River'],
      ['zip', '02720'],
    ]);
    expect(found('zip code 02139')).toEqual([['zip', '02139']]);
  });
  it('skips the organisation’s own address and five-digit numbers that are not ZIP codes', () => {
    expect(
      typesOf('Visit us at 1200 Beacon Street, Quincy, MA 02169.', { orgAddresses: ['1200 Beacon Street, Quincy, MA 02169'] }),
    ).toEqual([]);
    expect(typesOf('Group #: 88120; 45 boxes in Room 12')).toEqual([]);
  });
});

describe('labelled identifier detector', () => {
  it('finds MRNs, plan, account, licence, vehicle, device and other numbers by their labels', () => {
    expect(found('MRN: 00482913')).toEqual([['mrn', '00482913']]);
    expect(found('Medical Record Number: 5512-0098')).toEqual([['mrn', '5512-0098']]);
    expect(found('Chart 96356394')).toEqual([['mrn', '96356394']]);
    expect(found('Member ID: XKH884512093')).toEqual([['health_plan_id', 'XKH884512093']]);
    expect(found('Medicare MBI 1EG4-TE5-MK73')).toEqual([['health_plan_id', '1EG4-TE5-MK73']]);
    expect(found('Acct # 88812345')).toEqual([['account_number', '88812345']]);
    expect(found('Driver’s License #D26157755')).toEqual([['license_number', 'D26157755']]);
    expect(found('license plate 7KLM221')).toEqual([['vehicle_id', '7KLM221']]);
    expect(found('VIN 1HGCM82633A004352')).toEqual([['vehicle_id', '1HGCM82633A004352']]);
    expect(found('pacemaker serial number: PJN448812')).toEqual([['device_id', 'PJN448812']]);
    expect(found('Rx #: 4471823 and Claim #CLM30794712')).toEqual([
      ['other_id', '4471823'],
      ['other_id', 'CLM30794712'],
    ]);
  });
  it('uses organisation MRN formats without a label', () => {
    expect(found('see GH2291834 and GH-1234567', { mrnPatterns: ['GH-?\\d{7}'] })).toEqual([
      ['mrn', 'GH2291834'],
      ['mrn', 'GH-1234567'],
    ]);
    expect(typesOf('see GH2291834')).toEqual([]);
  });
  it('ignores labels without a number and numbers of purchase orders, tickets and groups', () => {
    expect(typesOf('Your account number is pending. Ticket INC0012345, PO 4500123881, Group #: 88120.')).toEqual([]);
  });
  it('checks the check digit of an unlabelled VIN', () => {
    expect(vinCheckDigitOk('1HGCM82633A004352')).toBe(true);
    expect(vinCheckDigitOk('1HGCM82634A004352')).toBe(false);
    expect(typesOf('car 1HGCM82633A004352 parked')).toEqual(['vehicle_id']);
    expect(typesOf('parcel 1Z327AA9939842394X')).toEqual([]);
  });
});

describe('ICD-10 detector', () => {
  it('finds dotted codes anywhere and three-character codes near a diagnosis cue', () => {
    expect(found('Dx: E11.9')).toEqual([['icd10', 'E11.9']]);
    expect(found('Assessment: hypertension, I10')).toEqual([
      ['diagnosis', 'hypertension'],
      ['icd10', 'I10'],
    ]);
  });
  it('ignores vitamin names and room codes', () => {
    expect(typesOf('Take vitamin B12 daily; meet in room C12.')).toEqual([]);
  });
});

describe('findings', () => {
  it('carry type, offsets, confidence and detector, never the matched text', () => {
    const [f] = scanText('SSN 123-45-6789').findings;
    expect(Object.keys(f!).sort()).toEqual(['confidence', 'detector', 'end', 'start', 'type']);
    expect(JSON.stringify(f)).not.toContain('6789');
  });
});
