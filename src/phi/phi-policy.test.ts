import { describe, expect, it } from 'vitest';
import { classifyInbound } from './inbound-classifier.js';
import { policyDecision } from './phi-policy.js';
import { blankHtml, scanMessage } from './phi-scanner.js';

const org = { contacts: ['Maria Lopez'], orgPhones: ['(617) 555-0100'], orgDomains: ['mercy.example'] };
const reminder = {
  subject: 'Your appointment',
  text: 'Hi Maria, a reminder of your appointment on Tuesday at 3:30 PM. Call (617) 555-0100 to reschedule.',
};
const labResult = {
  subject: 'Lab results',
  text: 'Dear Maria,\nMRN: 00482913\nYour HbA1c was 8.1%, consistent with type 2 diabetes (E11.9).',
};

describe('default PHI policy', () => {
  it('lets a reminder with only a first name and an appointment time flow in monitored', () => {
    const { findings, sensitivity } = scanMessage(reminder, org);
    expect(findings.map((f) => f.type)).toEqual(['name']);
    expect(sensitivity).toBe('low');
    expect(policyDecision(findings, 'monitored')).toEqual({ hold: false, sensitivity: 'low', reasons: [] });
  });

  it('holds a lab result with an MRN and a diagnosis in monitored, gated_send and gated_all, not in autonomous', () => {
    const { findings, sensitivity } = scanMessage(labResult, org);
    expect(sensitivity).toBe('high');
    for (const mode of ['monitored', 'gated_send', 'gated_all'] as const) {
      const d = policyDecision(findings, mode);
      expect(d.hold, mode).toBe(true);
      expect(d.reasons).toEqual([{ code: 'phi', types: ['diagnosis', 'icd10', 'lab_value', 'mrn', 'name'] }]);
    }
    expect(policyDecision(findings, 'autonomous').hold).toBe(false);
  });

  it('holds in autonomous when the mailbox policy says so, by level or by type', () => {
    const { findings } = scanMessage(labResult, org);
    expect(policyDecision(findings, 'autonomous', { hold_at: { autonomous: 'high' } }).hold).toBe(true);
    expect(policyDecision(findings, 'autonomous', { hold_types: ['mrn'] }).hold).toBe(true);
    expect(policyDecision(findings, 'monitored', { hold_at: { monitored: 'never' } }).hold).toBe(false);
  });

  it('always holds Part 2 content and PHI in a subject, whatever the mailbox policy', () => {
    const part2 = scanMessage({ subject: 'Intake', text: 'Bring your buprenorphine dose card.' }, org);
    expect(part2.sensitivity).toBe('restricted');
    const d = policyDecision(part2.findings, 'autonomous', { hold_at: { autonomous: 'never' } });
    expect(d.hold).toBe(true);
    expect(d.reasons[0]).toEqual({ code: 'part2' });

    const subj = scanMessage({ subject: 'Results for Maria Lopez', text: 'Please log in.' }, org);
    const s = policyDecision(subj.findings, 'autonomous', { hold_at: { autonomous: 'never' } });
    expect(s.hold).toBe(true);
    expect(s.reasons).toEqual([{ code: 'phi_in_subject' }, { code: 'phi', types: ['name'] }]);
  });
});

describe('scanMessage', () => {
  it('scans html with offsets into the original markup', () => {
    const html = '<p>Patient: <b>Maria&nbsp;Lopez</b></p><p>DOB: 03/14/1962</p>';
    const r = scanMessage({ html }, org);
    const dob = r.findings.find((f) => f.type === 'dob')!;
    expect(dob.field).toBe('html');
    expect(html.slice(dob.start, dob.end)).toBe('03/14/1962');
    expect(blankHtml(html)).toHaveLength(html.length);
  });

  it('scans text attachments and their names, flags images as possible full-face photos, skips other binaries', () => {
    const r = scanMessage(
      {
        text: 'See attached.',
        attachments: [
          { filename: 'labs.csv', content_type: 'text/csv', content: Buffer.from('mrn,value\nMRN: 00482913,HbA1c 7.1%\n') },
          { filename: 'photo.jpg', content_type: 'image/jpeg', content: Buffer.from([0xff, 0xd8]) },
          { filename: 'scan.pdf', content_type: 'application/pdf', content: Buffer.from('%PDF-1.7 SSN 123-45-6789') },
          { filename: 'Maria_Lopez_referral.docx', content_type: 'application/octet-stream' },
        ],
      },
      org,
    );
    const summary = r.findings.map((f) => [f.field, f.attachment, f.type]);
    expect(summary).toEqual([
      ['attachment', 0, 'mrn'],
      ['attachment', 0, 'lab_value'],
      ['attachment', 1, 'possible_full_face_photo'],
      ['attachment_name', 3, 'name'],
    ]);
  });
});

describe('inbound tagging', () => {
  it('tags prescription, billing, urgent, referral, results and appointment mail, with PHI and Part 2 tags', () => {
    expect(classifyInbound('I need a refill of my lisinopril, my pharmacy is CVS.')).toEqual(
      expect.arrayContaining(['prescription', 'phi']),
    );
    expect(classifyInbound('Question about my bill: the balance seems wrong.')).toEqual(['billing']);
    expect(classifyInbound('URGENT: chest pain since this morning')).toContain('urgent');
    expect(classifyInbound('Referral for cardiology consult attached')).toContain('referral');
    expect(classifyInbound('Are my lab results back?')).toEqual(['results']);
    expect(classifyInbound('Can I reschedule my appointment to Friday?')).toEqual(['appointment']);
    expect(classifyInbound('I relapsed and need help with my methadone dose')).toEqual(expect.arrayContaining(['phi', 'part2']));
  });
});
