import { describe, expect, it } from 'vitest';
import { scanText } from './phi-scanner.js';
import type { ScanOptions } from './phi-types.js';

const found = (text: string, options?: ScanOptions) => scanText(text, options).findings.map((f) => [f.type, text.slice(f.start, f.end)]);
const typesOf = (text: string, options?: ScanOptions) => scanText(text, options).findings.map((f) => f.type);

describe('name detector', () => {
  const contacts: ScanOptions = { contacts: ['Maria Lopez', "Sean O'Brien", 'Will Turner'] };
  it('finds contact names written with a capital, whole or in part, possessive or not', () => {
    expect(found('We spoke with Maria Lopez today.', contacts)).toEqual([['name', 'Maria Lopez']]);
    expect(found("Maria's results are in.", contacts)).toEqual([['name', 'Maria']]);
    expect(found("Mr O'Brien called.", contacts)).toEqual([['name', "O'Brien"]]);
  });
  it('does not take lower-case words or a sentence-initial everyday word for a contact', () => {
    expect(typesOf('maria is a common word here', contacts)).toEqual([]);
    expect(typesOf('Will you confirm by Friday?', contacts)).toEqual([]);
  });
  it('finds names after salutations, titles and labels without a contact list', () => {
    expect(found('Dear Mrs. Okafor,')).toEqual([['name', 'Okafor']]);
    expect(found('Dear Amara,')).toEqual([['name', 'Amara']]);
    expect(found('Patient: Lopez, Maria')).toEqual([['name', 'Lopez, Maria']]);
    expect(found('Patient Name: Kwame Mensah')).toEqual([['name', 'Kwame Mensah']]);
    expect(found('could you see our patient Ingrid Schneider')).toEqual([['name', 'Ingrid Schneider']]);
  });
  it('does not take clinicians, teams or department names for patients', () => {
    expect(typesOf('Dear Dr. Patel, Hi Cardiology team, Dear Colleague, Dear Valued Patient, Log in to the Patient Portal.')).toEqual([]);
  });
});

describe('clinical vocabulary detector', () => {
  it('finds medications, diagnoses and lab values, multi-word and case-insensitive', () => {
    expect(found('Continue Metformin 500 mg and lisinopril.')).toEqual([
      ['medication', 'Metformin'],
      ['medication', 'lisinopril'],
    ]);
    expect(found('History of congestive heart failure and type 2 diabetes.')).toEqual([
      ['diagnosis', 'congestive heart failure'],
      ['diagnosis', 'type 2 diabetes'],
    ]);
    expect(found('Your HbA1c was 7.2% and LDL cholesterol 162 mg/dL.')).toEqual([
      ['lab_value', 'HbA1c was 7.2%'],
      ['lab_value', 'LDL cholesterol 162 mg/dL'],
    ]);
  });
  it('recognises unknown drugs by their USAN stem and conditions by their shape', () => {
    expect(found('Started nifedipine and meloxicam.')).toEqual([
      ['medication', 'nifedipine'],
      ['medication', 'meloxicam'],
    ]);
    expect(found('Treated for plantar fasciitis and vitamin D deficiency.')).toEqual([
      ['diagnosis', 'plantar fasciitis'],
      ['diagnosis', 'vitamin D deficiency'],
    ]);
  });
  it('does not report a lab name without a value, acronyms in lower case, or everyday words', () => {
    expect(typesOf('Your cholesterol panel is ready. Hearing aids are in. The diagnosis and prognosis were discussed.')).toEqual([]);
  });
  it('reports substance-use-disorder content as Part 2, not as a medication', () => {
    expect(found('Enrolled for opioid use disorder; started Suboxone.')).toEqual([
      ['part2', 'opioid use disorder'],
      ['part2', 'Suboxone'],
    ]);
  });
});
