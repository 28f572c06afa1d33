import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { holdsInMonitored } from './message-eval.js';
import {
  assessMessage,
  assessRules,
  categoryIsContextFree,
  MERGED_PATTERN_LIMIT,
  mergedPatternLengths,
  nextVocabularyMatch,
  vocabularyMatchesByPattern,
  vocabularyRunFilter,
} from './phi-context.js';
import { messageDecision } from './phi-policy.js';

/** Written for these tests (not taken from any corpus): one line per rule of the judgement. */
const HOLD: [string, string, string][] = [
  ['result in words', 'Checking in', 'Hi Omar, good news: the biopsy came back benign. Nothing further needed.'],
  [
    'result with no test named but a conversation',
    'Call us',
    'Dear Mrs. Alvarez, the doctor would like to go over your results with you. Please call.',
  ],
  [
    'value higher than wanted',
    're: labs',
    'Hey Priscilla, your sugar numbers are a bit higher than we want, so Dr. Ames wants to see you.',
  ],
  ['referral with a reason', 'Referral', 'Hi Tom, Dr. Lee has referred you to a dermatologist about the changing mole on your back.'],
  ['specialist as the need', 'Next steps', 'Ms. Grant, you need to see a cardiologist soon; we will send the paperwork.'],
  ['dashed account number', 'Statement', 'Dear Luis Ortega, your statement for account 7781-2290-04 is ready. Balance $40.'],
  ['prefixed member id', 'Coverage', 'Hi Ruth, your plan confirmed member ID HXP-4471-2290 is active for the new year.'],
  ['grouped policy number', 'Insurance', 'Mr. Chen, we have your policy no. 4471 2290 1833 on file for the visit.'],
  ['medicare number', 'Your card', 'Dear Mr. Ford, your Medicare number 1EG4-TE5-MK73 has been added to your chart.'],
  ['SSN', 'Form', 'Hi Bea, is your SSN 512-44-9087? The form needs it.'],
  ['dosing logistics (Part 2)', 'Schedule', 'Hi Kai, the dosing window moves to 7:00 next week; your take-home doses are unchanged.'],
  ['programme intake (Part 2)', 'Intake', 'Dear Mr. Reyes, your intake at the outpatient program is Monday at 9. Bring ID.'],
  ['reminder naming the procedure', 'Reminder', 'Hi Jo, reminder of your mammogram on Friday at 9:40 at 1200 Fenwick Avenue.'],
  ['reminder naming the condition', 'Reminder', 'Hi Jo, your asthma check with Dr. Patel is on Tuesday at 3 PM.'],
  ['pregnancy care', 'Appointment', 'Hi Nadia, your 20-week scan is booked for June 3 at 10 AM.'],
  ['mental-health care', 'Next week', 'Hi Sam, see you at our therapy session on Thursday at 5.'],
  ['medication by class', 'Pharmacy', 'Hello Ivy, your inhaler refill is ready at the front counter.'],
  ['a named patient in staff mail', 'rm 12', 'Can someone check on Mr. Dunn in room 12? His wound is bleeding through the dressing.'],
  [
    'a personal recall',
    'Important',
    'Dear Ms. Park, our records show you were implanted with a pump from lot 4471, which is being recalled.',
  ],
];

const PASS: [string, string, string][] = [
  [
    'minimal reminder (name, time, address)',
    'Reminder',
    'Hi Maria, a reminder of your appointment on Tuesday, March 10 at 10:30 AM at 12 Main Street. Bring your insurance card.',
  ],
  [
    'the clinic name contains a condition',
    'Your visit',
    'Dear Kenji, your visit at the Lakeside Diabetes Center is on 05/14 at 2:15 PM with Dr. Osei.',
  ],
  ['a department name in a signature', 'Hours', 'Hi Ana, we are open until 6 on Fridays.\n\nBreast Health Center\nRiverbend Hospital'],
  [
    'referral without a reason',
    'Referral sent',
    'Hi Greg, your referral to Dr. Amari at Northside Cardiology has been sent. They will call you.',
  ],
  ['a notification without the test', 'New result', 'Hello, a new result is available in your portal. Sign in to view it.'],
  [
    'an announcement with medical words',
    'Flu clinic',
    'All patients: our flu clinic is on Saturday. Walk in, no appointment needed. Diabetes and asthma patients welcome.',
  ],
  [
    'a public recall',
    'Recall',
    'Dear patients, the manufacturer of the SteadyStep glucose meter has issued a voluntary recall of some lots.',
  ],
  [
    'invoice and order numbers',
    'Invoice INV-2025-00912',
    'Please find invoice INV-2025-00912 and order ORD-4471-2290-18 for the March supplies.',
  ],
  ['a masked card', 'Payment received', 'Hi Ben, we received your payment of $20 (card ending 4471). Receipt R-0098812.'],
  ['a tracking number', 'Shipped', 'Your order 4471229018 has shipped. Tracking: 1Z 999 AA1 01 2345 6784.'],
  ['staff logistics', 'Out Friday', 'Hi all, I am out on Friday. Please send urgent referrals to Jo at ext. 2214.'],
  ['general health tips', 'Stay cool', 'Hot days ahead: drink water, rest in the shade and check on older neighbours.'],
  ['a routine vaccine reminder', 'Flu shot', 'Hi Leo, your flu shot is due. Walk in any weekday morning.'],
  ['a prescription without the drug', 'Ready', 'Hi Mia, your prescription is ready for pickup at the pharmacy counter.'],
  [
    'a public notice from a Part 2 programme',
    'Holiday hours',
    'Harbor Recovery Services will be closed on July 4. All patients will receive take-home doses on July 3.',
  ],
];

describe('message-level PHI judgement', () => {
  for (const [why, subject, text] of HOLD) {
    it(`holds ${why}`, () => {
      const a = assessMessage({ subject, text });
      expect(a.phi, JSON.stringify(a.disclosures)).toBe(true);
      expect(messageDecision(a, 'monitored').hold).toBe(true);
    });
  }
  for (const [why, subject, text] of PASS) {
    it(`lets pass ${why}`, () => {
      const a = assessMessage({ subject, text });
      expect(a.phi, `${JSON.stringify(a.disclosures)} ${JSON.stringify(a.identifiers)}`).toBe(false);
      expect(messageDecision(a, 'monitored').hold).toBe(false);
    });
  }

  // Round 7's rule categories, on sentences written for this test (no corpus line): each found by the rules themselves.
  const ROUND7_RULES: [string, string, string, string][] = [
    [
      'a note above a forwarded announcement',
      'FW: Flu clinic Saturday',
      'Mum - skip this one, the nurse said no live jabs while the chemo is still going. x\n\n---------- Forwarded message ---------\nFrom: Larchmont Surgery\nAll patients over 65 are welcome at our flu clinic on Saturday.',
      'condition',
    ],
    [
      'her condition, of a person an announcement names',
      'Team news',
      'Hello everyone, please welcome Odile Marchand back on Monday after her kidney transplant. Cake at noon!',
      'condition',
    ],
    [
      'a drug behind a prescription number',
      'Shipped',
      'Your order shipped today. Rx 7718204 LAMOTRIGINE 100 MG TAB qty 60. Tracking 1Z 99 AA1 0012 4471.',
      'medication',
    ],
    [
      'a treatment unit the reader attends for their own sessions',
      'Parking',
      'Hi Bram, your permit covers Lot D on Tuesdays and Thursdays for your 7:00 sessions at the Fenwick Dialysis Unit.',
      'procedure',
    ],
    ['a blood-pressure reading', 'Visit', 'Hi Tove, thanks for coming in. Your blood pressure today was 148/96.', 'condition'],
    ['a counsellor by licence', 'Thursday', 'Hi Ruben, your session with Ana Ibsen, LMFT, moves to Thursday at 4.', 'mental_health'],
    [
      'one person called by name, their own slot moving (no broadcast)',
      'Window',
      'Tomasz, from Monday your dosing window moves to 7:00 and your take-home days stay the same.',
      'substance_use',
    ],
  ];
  for (const [why, subject, text, disclosure] of ROUND7_RULES) {
    it(`finds ${why} (rules)`, () => {
      const r = assessRules({ subject, text });
      expect(r.phi).toBe(true);
      expect(r.disclosures).toContain(disclosure);
    });
  }
  it('reads a specialty after "in", "at" or "Location:" as the department of the visit (LABELING.md P3)', () => {
    for (const text of [
      'Dear Lars, this is a reminder of your appointment with Dr. Moreau in Nephrology on 4 May at 9:30, Room 2C.',
      'APPOINTMENT REMINDER\nRe: Priya Sandhu\nDate: 12 June\nLocation: Cardiology, Suite 210',
    ]) {
      const a = assessMessage({ subject: 'Reminder', text });
      expect(a.disclosures).toEqual([]);
      expect(messageDecision(a, 'monitored').hold).toBe(false);
    }
    // The same specialty as the person's need still holds (edge case 4).
    expect(assessRules({ subject: 'Next steps', text: 'Hi Lars, you need to see Nephrology about your kidney numbers.' }).phi).toBe(true);
  });

  it('says whom and what: the recipient, a named person, nobody; the disclosures as data', () => {
    const own = assessMessage({ subject: 'Results', text: 'Hi Dana, your strep test came back negative.' });
    expect(own).toMatchObject({ about: 'recipient', sensitivity: 'high', part2: false });
    expect(own.disclosures).toEqual(expect.arrayContaining(['result']));
    const named = assessMessage({ subject: 'FW', text: 'Patient: Oyelaran, Babatunde. Hep C antibody reactive.' });
    expect(named.about).toBe('named');
    const nobody = assessMessage({ subject: 'Closed', text: 'All patients: the lab is closed Saturday.' });
    expect(nobody).toMatchObject({ about: 'nobody', broadcast: true, phi: false });
  });

  it('rates Part 2 restricted and holds it in every mode but read_only, even autonomous', () => {
    const a = assessMessage({
      subject: 'Group',
      text: 'hey Lucas, the tuesday counselling group at the recovery program moved to room B.',
    });
    expect(a).toMatchObject({ part2: true, sensitivity: 'restricted' });
    expect(messageDecision(a, 'autonomous').reasons.map((r) => r.code)).toEqual(['part2', 'phi']);
  });

  it('rates an identifier alone moderate and a minimal reminder low, so monitored holds the one and lets the other flow', () => {
    const id = assessMessage({ subject: 'Statement', text: 'Pt acct: 0048-2913-77. Guarantor: Hiroshi Watanabe. Bal $312.55' });
    expect(id).toMatchObject({ sensitivity: 'moderate', identifiers: ['account_number'] });
    // The rules' levels (assessRules); the trained classifier's decision on reminders is in phi-classifier.test.ts.
    const minimal = assessRules({ subject: 'Reminder', text: 'Dear Mr. Okafor, your appointment is on Tuesday at 3:30 PM.' });
    expect(minimal.sensitivity).toBe('low');
    expect(messageDecision(minimal, 'monitored').hold).toBe(false);
    // A mailbox that asks to hold even low sensitivity still can.
    expect(messageDecision(minimal, 'monitored', { hold_at: { monitored: 'low' } }).hold).toBe(true);
  });

  it('holds a subject that itself discloses, with phi_in_subject', () => {
    const a = assessMessage({ subject: 'Your colonoscopy prep', text: 'See the attached instructions.' });
    expect(a.subjectPhi).toBe(true);
    expect(messageDecision(a, 'autonomous').reasons.map((r) => r.code)).toEqual(['phi_in_subject', 'phi']);
    expect(a.cues).toEqual([{ disclosure: 'procedure', field: 'subject', start: 5, end: 16 }]);
  });

  it("never holds for the organisation's own name, even one that names a condition", () => {
    const orgNames = ['Riverside Heart Failure & Transplant'];
    const a = assessMessage(
      { subject: 'Hours', text: 'Hi Ana, Riverside Heart Failure & Transplant is open late on Thursdays.' },
      { orgNames },
    );
    expect(a.phi).toBe(false);
  });

  it('keeps the span findings for highlighting, with offsets and no text', () => {
    const a = assessMessage({ subject: 'Labs', text: 'Dear Maria, your HbA1c was 8.1% today.' });
    expect(a.findings.map((f) => f.type)).toEqual(['name', 'lab_value']);
    expect(Object.keys(a.findings[0]!).sort()).toEqual(['confidence', 'detector', 'end', 'field', 'start', 'type']);
  });
});

// The rules' regression cases (the rules are the classifier's features and stay exact here; the classifier's own
// score on these cases is in phi-classifier.test.ts). Round 1's cases and round 2's probes (test/fixtures/phi-judgement-cases-round2.jsonl: written by hand for the second
// round in the voices of many settings, before and while tuning; cases the rules still get wrong are left out and
// listed in the README).
describe.each(['phi-judgement-cases.jsonl', 'phi-judgement-cases-round2.jsonl'])(
  'the rules (assessRules) on the regression cases in %s (written by the detector authors: not an evaluation)',
  (name) => {
    const file = path.join(import.meta.dirname, '..', '..', 'test', 'fixtures', name);
    const cases = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { id: string; hold: boolean; subject: string; text: string });
    for (const c of cases) {
      it(`${c.hold ? 'holds' : 'lets pass'} ${c.id}`, () => {
        expect(holdsInMonitored(assessRules({ subject: c.subject, text: c.text }))).toBe(c.hold);
      });
    }
  },
);

it('keeps the merged vocabulary patterns small enough for V8 to optimise them (under 20 KiB of source)', () => {
  // Above the limit V8 compiles the pattern without its optimisations and the judgement slows down several times.
  for (const n of mergedPatternLengths()) expect(n).toBeLessThan(MERGED_PATTERN_LIMIT);
});

it('remembers the category of a vocabulary match only when no term with an assertion could produce it', () => {
  // Terms whose match depends on what surrounds them ("therapy" but not after "physical ", "covid" but not before
  // "vaccine", "the flu" before "shot"): their category is looked up at every match, never remembered.
  for (const w of ['therapy', 'therapists', 'counselling', 'covid', 'covid-19', 'influenza', 'the flu', 'dose you', 'due date', 'terapia'])
    expect(categoryIsContextFree(w), w).toBe(false);
  for (const w of ['asthma', 'insulin', 'colonoscopy', 'talk therapy', 'physical therapy', 'bloodwork'])
    expect(categoryIsContextFree(w), w).toBe(true);
  // The same words in different messages of one process keep their own judgements.
  expect(assessRules({ subject: 'Hi', text: 'Hi Ana, your physical therapy is on Monday.' }).disclosures).toContain('procedure');
  expect(assessRules({ subject: 'Hi', text: 'Hi Ana, your therapy session is on Monday.' }).disclosures).toContain('mental_health');
  expect(assessRules({ subject: 'Hi', text: 'Hi Ana, your covid vaccine is on Monday.' }).disclosures).not.toContain('condition');
  expect(assessRules({ subject: 'Hi', text: 'Hi Ana, your covid test came back and you have covid.' }).disclosures).toContain('condition');
});

describe('the vocabulary walk (runs the merged pattern only where a term can begin)', () => {
  const walk = (low: string) => {
    const out: [number, number][] = [];
    for (let m = nextVocabularyMatch(low, 0); m !== null; m = nextVocabularyMatch(low, m[1])) out.push(m);
    return out;
  };
  /** Every message of the corpus files and the span corpus (subject and text as the judgement reads them). */
  const corpusTexts = () => {
    const root = path.join(import.meta.dirname, '..', '..');
    const texts: string[] = [];
    const read = (dir: string) => {
      for (const f of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, f.name);
        if (f.isDirectory()) read(p);
        else if (f.name.endsWith('.jsonl'))
          for (const l of fs.readFileSync(p, 'utf8').split('\n'))
            if (l.trim()) {
              const m = JSON.parse(l) as { subject?: string; text?: string };
              if (typeof m.text === 'string') texts.push(`${m.subject ?? ''}\n${m.text}`);
            }
      }
    };
    read(path.join(root, 'eval', 'phi-messages'));
    read(path.join(root, 'test', 'fixtures', 'phi-corpus'));
    return texts;
  };

  it('lets only some word starts through (every term read)', () => {
    // A term the expansion could not read would let every word start through: still exact, no longer faster.
    const f = vocabularyRunFilter();
    expect(f.everyRun).toBe(false);
    expect(f.exact).toBeGreaterThan(500);
  });

  it('finds exactly the matches of the merged pattern on every corpus message', () => {
    const texts = corpusTexts();
    expect(texts.length).toBeGreaterThan(4000);
    let matches = 0;
    for (const t of texts) {
      const low = t.toLowerCase();
      const want = vocabularyMatchesByPattern(low);
      matches += want.length;
      expect(walk(low)).toEqual(want);
    }
    expect(matches).toBeGreaterThan(1000);
  });

  it('finds exactly the matches of the merged pattern on generated text (corpus words, digits, separators)', () => {
    // Corpus words and fragments of terms, joined by separators the word-start rule treats differently
    // ('_' and 'é' are word characters before a term, '-' and "'" are not), so terms open at many kinds of places.
    const words = [
      ...new Set(
        corpusTexts()
          .slice(0, 600)
          .join(' ')
          .toLowerCase()
          .split(/[^a-z0-9'-]+/),
      ),
    ];
    const fragments = [
      'your',
      'his',
      'her',
      'the',
      'at',
      'to',
      'is',
      '12',
      '4',
      '7.5',
      'mg',
      'weeks',
      'carries',
      'therapy',
      'physical',
      'due date',
      'b12',
      'covid-19',
      'x-ray',
    ];
    const seps = [' ', ' ', ' ', '\n', ', ', '. ', '-', "'", '_', 'é', '/', '+', ' the ', ' your '];
    let seed = 7;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pool = [...words.filter((w) => w.length > 1), ...fragments];
    for (let i = 0; i < 5000; i++) {
      let t = '';
      for (let k = 2 + rnd(14); k > 0; k--) t += pool[rnd(pool.length)]! + seps[rnd(seps.length)]!;
      expect(walk(t), t).toEqual(vocabularyMatchesByPattern(t));
    }
  });
});
