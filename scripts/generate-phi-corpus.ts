/**
 * Generates the labelled PHI corpus: test/fixtures/phi-corpus/corpus.jsonl and
 * org.json. Deterministic (seeded PRNG): running it again gives the same
 * bytes. Labelling rules are in test/fixtures/phi-corpus/README.md.
 *
 *   node --import tsx scripts/generate-phi-corpus.ts [--seed 9] [--out dir]
 *
 * Names, drugs and conditions come from this file's own pools, not from the
 * detector's lists; some drugs and conditions here are deliberately absent
 * from the detector's lexicon, and a share of patients are not in the
 * organisation's contact list, so the corpus measures the detector rather
 * than echoing it.
 */
import fs from 'node:fs';
import path from 'node:path';

type Span = { type: string; start: number; end: number };
type Message = { id: string; kind: string; text: string; spans: Span[] };

const args = process.argv.slice(2);
const argOf = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
};
const SEED = Number(argOf('--seed', '9'));
const OUT = argOf('--out', path.join('test', 'fixtures', 'phi-corpus'));

// mulberry32: small, fast, deterministic.
let state = SEED >>> 0;
const rand = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const chance = (p: number) => rand() < p;
const digits = (n: number) => Array.from({ length: n }, () => String(int(0, 9))).join('');
const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const shuffle = <T>(xs: T[]): T[] => {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
};

// --- the organisation --------------------------------------------------------
const ORG = {
  name: 'Mercy Valley Health',
  domain: 'mercyvalley.example',
  mainLine: '(617) 555-0100',
  address: '1200 Beacon Street, Quincy, MA 02169',
  mainFax: '617-555-0188',
  pharmacyLine: '617.555.0175',
};

const FIRST = [
  'Maria',
  'James',
  'Aisha',
  'Wei',
  'Olga',
  'Tomás',
  'Priya',
  'Kwame',
  'Hannah',
  'Luis',
  'Fatima',
  'Daniel',
  'Mei',
  'Samuel',
  'Ingrid',
  'Rahul',
  'Chloe',
  'Dmitri',
  'Amara',
  'Jonah',
  'Sofia',
  'Emeka',
  'Yuki',
  'Brendan',
  'Lucía',
  'Omar',
  'Greta',
  'Tariq',
  'Nadia',
  'Elliot',
  'Rosa',
  'Hamid',
  'Leah',
  'Viktor',
  'Zainab',
  'Patrick',
  'Ana',
  'Connor',
  'Imani',
  'Felix',
  'Beatriz',
  'Cedric',
  'Dolores',
  'Eamon',
  'Farida',
  'Gideon',
  'Hyun',
  'Isolde',
  'Jasper',
  'Keiko',
  'Lorenzo',
  'Marisol',
  'Nikolai',
  'Odette',
  'Pavel',
  'Quentin',
  'Renata',
  'Soren',
  'Thandiwe',
  'Ulrich',
  'Valentina',
  'Wendell',
  'Xiomara',
  'Yusuf',
  'Zofia',
  'Agnieszka',
  'Bashir',
  'Cormac',
  'Delphine',
  'Esperanza',
  'Florian',
  'Gwendolyn',
  'Horatio',
  'Ilse',
  'Jorge',
  'Kalani',
  'Leopold',
  'Mireille',
  'Nnamdi',
  'Ottilie',
];
const LAST = [
  'Lopez',
  'Okafor',
  'Nguyen',
  'Kowalski',
  'Haddad',
  'Fitzgerald',
  'Patel',
  'Mensah',
  'Schneider',
  'Ramirez',
  'Chen',
  "O'Brien",
  'Abernathy',
  'Sato',
  'Lindqvist',
  'Moreau',
  'Adeyemi',
  'Castillo',
  'Petrov',
  'MacLeod',
  'Rossi',
  'Dubois',
  'Nakamura',
  'Oyelaran',
  'Whitfield',
  'Santos',
  'Kaminski',
  'Bergstrom',
  'Achebe',
  'Delgado',
  'Hoffmann',
  'Varga',
  'Quigley',
  'Mbeki',
  'Halvorsen',
  'Ferreira',
  'Yilmaz',
  'Grant',
  'Novak',
  'Ibarra',
  'Albrecht',
  'Brannigan',
  'Cienfuegos',
  'Drummond',
  'Esposito',
  'Fairweather',
  'Gallagher',
  'Hakimi',
  'Iwasaki',
  'Jablonski',
  'Kavanagh',
  'Lachance',
  'Montgomery',
  'Nordqvist',
  'Ortega-Ruiz',
  'Pemberton',
  'Quintero',
  'Rautenberg',
  'Szymanski',
  'Tanaka',
  'Underwood',
  'Valdivia',
  'Wojcik',
  'Xu',
  'Yamamoto',
  'Zielinski',
  'Ashworth',
  'Bellamy',
  'Carmichael',
  'Dufresne',
  'Ekwueme',
  'Forsythe',
  'Gutierrez',
  'Holloway',
  'Ivanova',
  'Jaramillo',
  'Krishnan',
  'Llewellyn',
  'Muñoz',
  'Nakashima',
];
const CLINICIANS = ['Dr. Rivera', 'Dr. Goldberg', 'Dr. Amadi', 'Dr. Sorensen', 'Dr. Kapoor', 'Dr. Wallace', 'Dr. Huang', 'Dr. Eriksen'];
const STAFF = ['Janet in Scheduling', 'the Front Desk', 'the Billing Office', 'Care Coordination', 'the Refill Line', 'Nurse Thompson'];
const CLINICS = [
  'Cardiology',
  'Endocrinology',
  'Primary Care',
  'Orthopedics',
  'Dermatology',
  'Oncology',
  'Pulmonology',
  'Women’s Health',
  'Nephrology',
];
const STREETS = ['Maple', 'Oak', 'Harbor', 'Chestnut', 'Willow', 'Beacon', 'Elm', 'Granite', 'Lakeview', 'Summit', 'Mill', 'Cedar'];
const SUFFIXES = ['Street', 'St', 'Avenue', 'Ave', 'Road', 'Rd', 'Lane', 'Drive', 'Court', 'Way', 'Blvd'];
const CITIES: [string, string, string][] = [
  ['Riverton', 'NJ', '08077'],
  ['Quincy', 'MA', '02169'],
  ['Springfield', 'IL', '62704'],
  ['Salem', 'OR', '97301'],
  ['Dover', 'DE', '19901'],
  ['Fall River', 'MA', '02720'],
  ['Ann Arbor', 'MI', '48104'],
  ['Bend', 'OR', '97701'],
];
const MAIL_DOMAINS = ['gmail.com', 'yahoo.com', 'outlook.com', 'comcast.net', 'icloud.com', 'proton.me'];
// Drugs: most are common enough to be in any compact list; the last few deliberately are not in the detector's.
const DRUGS = [
  'lisinopril',
  'metformin',
  'atorvastatin',
  'amlodipine',
  'levothyroxine',
  'omeprazole',
  'losartan',
  'sertraline',
  'gabapentin',
  'albuterol',
  'Eliquis',
  'Jardiance',
  'warfarin',
  'furosemide',
  'prednisone',
  'amoxicillin',
  'Ozempic',
  'insulin glargine',
  'montelukast',
  'escitalopram',
  'tamsulosin',
  'meloxicam',
  'benzonatate',
  'nifedipine',
];
const CONDITIONS: [string, string][] = [
  ['type 2 diabetes', 'E11.9'],
  ['hypertension', 'I10'],
  ['hyperlipidemia', 'E78.5'],
  ['atrial fibrillation', 'I48.91'],
  ['asthma', 'J45.909'],
  ['hypothyroidism', 'E03.9'],
  ['chronic kidney disease', 'N18.3'],
  ['heart failure', 'I50.9'],
  ['COPD', 'J44.9'],
  ['major depressive disorder', 'F32.9'],
  ['osteoarthritis', 'M19.90'],
  ['iron deficiency anemia', 'D50.9'],
  ['breast cancer', 'C50.911'],
  ['migraine', 'G43.909'],
  ['plantar fasciitis', 'M72.2'],
  ['vitamin D deficiency', 'E55.9'],
];
const LABS: [string, () => string][] = [
  ['HbA1c', () => `${int(55, 110) / 10}%`],
  ['A1c', () => `${int(55, 110) / 10}%`],
  ['LDL', () => `${int(70, 210)} mg/dL`],
  ['LDL cholesterol', () => `${int(70, 210)} mg/dL`],
  ['TSH', () => `${int(3, 90) / 10} mIU/L`],
  ['creatinine', () => `${int(6, 35) / 10} mg/dL`],
  ['eGFR', () => `${int(18, 95)} mL/min`],
  ['potassium', () => `${int(31, 58) / 10} mEq/L`],
  ['hemoglobin', () => `${int(85, 160) / 10} g/dL`],
  ['INR', () => `${int(10, 40) / 10}`],
  ['fasting glucose', () => `${int(80, 260)} mg/dL`],
  ['vitamin D', () => `${int(9, 60)} ng/mL`],
  ['PSA', () => `${int(5, 120) / 10} ng/mL`],
  ['ferritin', () => `${int(5, 300)} ng/mL`],
];
const LAB_PHRASES = [' ', ': ', ' was ', ' is ', ' came back at ', ' of ', ' level was ', ' = '];

// --- a message builder that records gold spans -------------------------------
class Doc {
  text = '';
  spans: Span[] = [];
  t(s: string) {
    this.text += s;
    return this;
  }
  p(type: string, value: string) {
    const start = this.text.length;
    this.text += value;
    this.spans.push({ type, start, end: this.text.length });
    return this;
  }
}

type Person = { first: string; last: string; contact: boolean; dob: Date; phone: string; email: string; mrn: string; title: string };
const people: Person[] = [];
const contacts: string[] = [];
const newPerson = (): Person => {
  const first = pick(FIRST);
  const last = pick(LAST);
  const contact = chance(0.8);
  if (contact) contacts.push(`${first} ${last}`);
  const p: Person = {
    first,
    last,
    contact,
    dob: new Date(Date.UTC(int(1930, 2015), int(0, 11), int(1, 28))),
    phone: phone(),
    email: email(first, last),
    mrn: mrn(),
    title: pick(['Mr.', 'Ms.', 'Mrs.', 'Mx.']),
  };
  people.push(p);
  return p;
};

// Fictional NANP numbers: 555-01xx is reserved for fiction; other exchanges from area codes near the org.
function phone(): string {
  const area = pick(['617', '508', '781', '401', '212', '312', '503']);
  const ex = pick(['555', String(int(201, 989))]);
  const line = ex === '555' ? `01${digits(2)}` : digits(4);
  switch (int(0, 5)) {
    case 0:
      return `(${area}) ${ex}-${line}`;
    case 1:
      return `${area}-${ex}-${line}`;
    case 2:
      return `${area}.${ex}.${line}`;
    case 3:
      return `+1 ${area} ${ex} ${line}`;
    case 4:
      return `${area} ${ex} ${line}`;
    default:
      return `1-${area}-${ex}-${line}`;
  }
}
function email(first: string, last: string): string {
  const f = first
    .normalize('NFD')
    .replace(/[^A-Za-z]/g, '')
    .toLowerCase();
  const l = last.replace(/[^A-Za-z]/g, '').toLowerCase();
  const local = pick([`${f}.${l}`, `${f[0]}${l}${int(1, 99)}`, `${f}_${l}`, `${l}.${f}${int(60, 99)}`, `${f}${l[0]}`]);
  return `${local}@${pick(MAIL_DOMAINS)}`;
}
function mrn(): string {
  return pick([
    () => `GH-${digits(7)}`,
    () => `GH${digits(7)}`,
    () => digits(8),
    () => `${digits(4)}-${digits(4)}`,
    () => `A${digits(7)}`,
  ])();
}
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const fmtDate = (d: Date, withYear = true): string => {
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth() + 1;
  const day = d.getUTCDate();
  const mon = MONTHS[m - 1]!;
  if (!withYear)
    return pick([
      `${mon} ${day}`,
      `${mon.slice(0, 3)} ${day}`,
      `${mon} ${day}${day === 1 ? 'st' : day === 2 ? 'nd' : day === 3 ? 'rd' : 'th'}`,
      `${day} ${mon}`,
    ]);
  switch (int(0, 6)) {
    case 0:
      return `${pad(m)}/${pad(day)}/${y}`;
    case 1:
      return `${m}/${day}/${String(y).slice(2)}`;
    case 2:
      return `${y}-${pad(m)}-${pad(day)}`;
    case 3:
      return `${mon} ${day}, ${y}`;
    case 4:
      return `${mon.slice(0, 3)} ${day}, ${y}`;
    case 5:
      return `${day} ${mon} ${y}`;
    default:
      return `${m}/${day}/${y}`;
  }
};
const futureDate = () => new Date(Date.UTC(2025, int(0, 11), int(1, 28)));
const time = () => `${int(7, 11)}:${pick(['00', '15', '30', '45'])} ${pick(['AM', 'am', 'a.m.'])}`;
const pmTime = () => `${int(1, 4)}:${pick(['00', '15', '30', '45'])} ${pick(['PM', 'pm'])}`;
const room = () =>
  pick([
    `Room ${int(1, 9)}${pick(['A', 'B', 'C'])}`,
    `Suite ${int(100, 450)}`,
    `Building ${pick(['A', 'C', 'E'])}, ${pick(['2nd', '3rd', '4th'])} floor`,
    `Exam Room ${int(2, 14)}`,
  ]);
const clinician = () => pick(CLINICIANS);
const clinic = () => pick(CLINICS);

/** Greeting: a name with a salutation cue, a bare first name, or none. */
const greet = (d: Doc, p: Person) => {
  switch (int(0, 4)) {
    case 0:
      d.t('Dear ').p('name', p.first).t(',\n\n');
      break;
    case 1:
      d.t(`Dear ${p.title} `).p('name', p.last).t(',\n\n');
      break;
    case 2:
      d.t('Hello ').p('name', `${p.first} ${p.last}`).t(',\n\n');
      break;
    case 3:
      d.t('Hi ').p('name', p.first).t(',\n');
      break;
    default:
      d.t(pick(['Dear Patient,\n\n', 'Dear Valued Patient,\n\n', 'Good morning,\n\n', 'Hello,\n\n']));
  }
};
const signoff = (d: Doc) => {
  d.t(pick(['\n\nThank you,\n', '\n\nBest regards,\n', '\n\nSincerely,\n', '\n\n-- \n']));
  d.t(`${pick(STAFF)}\n${ORG.name}\n`);
  if (chance(0.6)) d.t(pick(['Main line: ', 'Call us: ', 'Tel ', 'Phone: '])).t(ORG.mainLine);
  if (chance(0.3)) d.t(` | Fax: ${ORG.mainFax}`);
  if (chance(0.3)) d.t(`\nhttps://www.${ORG.domain}/locations`);
  if (chance(0.25)) d.t(`\n${ORG.address}`);
  // Not PHI, but shaped like it: a clinician's direct line and an insurer's toll-free number.
  if (chance(0.06)) d.t(`\n${clinician()}'s direct line: 617-555-01${digits(2)}`);
  if (chance(0.15)) d.t(`\nCoverage questions: call your plan at 1-${pick(['800', '888', '877'])}-555-0${digits(3)}.`);
  d.t('\n');
};
const mrnLine = (d: Doc, p: Person) => {
  if (p.mrn.startsWith('GH') && chance(0.4)) {
    d.t(pick(['Chart ', 'Ref: ', 'Record ']))
      .p('mrn', p.mrn)
      .t('\n');
    return;
  }
  d.t(pick(['MRN: ', 'MRN ', 'Medical Record Number: ', 'MR#: ', 'Med Rec #', 'Patient ID: ', 'Medical record no. ']))
    .p('mrn', p.mrn)
    .t('\n');
};
const dobLine = (d: Doc, p: Person) => {
  d.t(pick(['DOB: ', 'DOB ', 'Date of birth: ', 'D.O.B. ', 'Birthdate: ', 'born ']))
    .p('dob', fmtDate(p.dob))
    .t('\n');
};
const nameLine = (d: Doc, p: Person) => {
  if (chance(0.5))
    d.t(pick(['Patient: ', 'Patient Name: ', 'Pt: ', 'Name: ']))
      .p('name', chance(0.3) ? `${p.last}, ${p.first}` : `${p.first} ${p.last}`)
      .t('\n');
  else d.t('Re: ').p('name', `${p.first} ${p.last}`).t('\n');
};
const labPhrase = (d: Doc) => {
  const [name, val] = pick(LABS);
  d.p('lab_value', `${name}${pick(LAB_PHRASES)}${val()}`);
};
const distractorSentence = (d: Doc) => {
  d.t(
    pick([
      ` Please arrive 15 minutes early; parking is free in Garage ${pick(['B', 'C'])}.`,
      ` Your blood pressure today was ${int(110, 150)}/${int(70, 95)}.`,
      ` Take 1/2 tablet at bedtime.`,
      ` Visiting hours are 9:00 AM to 8:00 PM.`,
      ` Our NPI is 1${digits(9)} for your records.`,
      ` Reference order PO-${digits(7)} for the supplies.`,
      ` Questions? Call ${ORG.mainLine}, ext. ${int(1000, 9999)}.`,
      ` The clinic is closed on public holidays in ${int(2024, 2026)}.`,
      ` Group #: ${digits(5)}.`,
      ' Log in to the Patient Portal to see messages from your care team.',
      ` Your copay for this visit is $${int(10, 60)}.`,
      ` May we text you reminders? Reply YES.`,
      ` Your package tracking number is 1Z${digits(3)}A${pick(['A', 'E', 'W'])}${digits(11)}.`,
      ` Take ${int(1, 2)} tablets ${pick(['twice', '3 times'])} a day for ${int(5, 14)} days.`,
      '',
    ]),
  );
};

// --- message kinds --------------------------------------------------------------
const reminder = (): Doc => {
  const d = new Doc();
  const p = newPerson();
  const when = futureDate();
  switch (int(0, 3)) {
    case 0:
      greet(d, p);
      d.t(`This is a reminder of your appointment with ${clinician()} in ${clinic()} on `)
        .p('date', fmtDate(when, chance(0.5)))
        .t(` at ${time()}, ${room()}.`);
      distractorSentence(d);
      d.t(` To reschedule, call ${ORG.mainLine}.`);
      break;
    case 1:
      d.t('Hi ')
        .p('name', p.first)
        .t(
          `, just a reminder: you are booked for ${pmTime()} ${pick(['tomorrow', 'on Tuesday', 'on Friday', 'next Monday'])} with ${clinician()}. Reply C to confirm.`,
        );
      break;
    case 2:
      d.t('APPOINTMENT REMINDER\n');
      nameLine(d, p);
      d.t('Date: ').p('date', fmtDate(when)).t(`\nTime: ${time()}\nLocation: ${clinic()}, ${room()}\n`);
      if (chance(0.5)) mrnLine(d, p);
      if (chance(0.4)) d.t('Contact on file: ').p('phone', p.phone).t('\n');
      distractorSentence(d);
      break;
    default:
      greet(d, p);
      d.t('Your ')
        .t(pick(['follow-up', 'annual physical', 'telehealth visit', 'procedure']))
        .t(' is scheduled for ')
        .p('date', fmtDate(when, chance(0.3)))
        .t(`. We will text ${pick(['you', 'this number'])} at `)
        .p('phone', p.phone)
        .t(' the day before.');
      if (chance(0.5))
        d.t(' Join at ')
          .p('url', `https://telehealth.${ORG.domain}/visit/${digits(6)}?pin=${digits(4)}`)
          .t(' when it is time.');
      distractorSentence(d);
  }
  signoff(d);
  return d;
};

const referral = (): Doc => {
  const d = new Doc();
  const p = newPerson();
  const [cond, icd] = pick(CONDITIONS);
  const parts: ((d: Doc) => void)[] = [
    (d) => nameLine(d, p),
    (d) => dobLine(d, p),
    (d) => mrnLine(d, p),
    (d) => {
      d.t('Phone: ').p('phone', p.phone).t('\n');
    },
  ];
  if (chance(0.5))
    parts.push((d) =>
      d
        .t('Insurance: ')
        .t(pick(['Blue Cross', 'Aetna', 'Medicare', 'Tufts']))
        .t(pick([' Member ID: ', ' Member #', ' Subscriber ID: ', ' Policy #: ']))
        .p('health_plan_id', `${pick(['XKH', 'BCB', 'AET', 'W'])}${digits(9)}`)
        .t('\n'),
    );
  if (chance(0.4)) {
    const [city, st, zip] = pick(CITIES);
    parts.push((d) =>
      d
        .t('Address: ')
        .p(
          'address',
          `${int(2, 9800)} ${pick(STREETS)} ${pick(SUFFIXES)}${chance(0.3) ? `, Apt ${int(1, 30)}${pick(['', 'B'])}` : ''}, ${city}`,
        )
        .t(`, ${st} `)
        .p('zip', zip)
        .t('\n'),
    );
  }
  switch (int(0, 2)) {
    case 0:
      d.t(`Dear ${clinician()},\n\nI am referring the patient below to ${clinic()} for evaluation.\n\n`);
      for (const f of shuffle(parts)) f(d);
      d.t('\nReason for referral: ').p('diagnosis', cond).t(' (ICD-10 ').p('icd10', icd).t(').');
      break;
    case 1:
      d.t(`Referral to ${clinic()}\n`);
      for (const f of shuffle(parts)) f(d);
      d.t('Dx: ').p('diagnosis', cond).t(', ').p('icd10', icd).t('\n');
      d.t('Current meds: ')
        .p('medication', pick(DRUGS))
        .t(` ${pick(['10 mg', '20 mg daily', '500 mg BID', '81 mg'])}, `)
        .p('medication', pick(DRUGS))
        .t('.\n');
      break;
    default:
      d.t(`Hello ${clinician()} - could you see our patient `)
        .p('name', `${p.first} ${p.last}`)
        .t(' (DOB ')
        .p('dob', fmtDate(p.dob))
        .t(') for worsening ')
        .p('diagnosis', cond)
        .t('? Recent ');
      labPhrase(d);
      d.t('. Chart ').p('mrn', p.mrn).t(`. Fax notes to ${ORG.mainFax}.`);
  }
  if (chance(0.3)) {
    d.t('\nReferral #: ').p('other_id', `R${digits(7)}`);
  }
  if (chance(0.15)) {
    d.t('\nThe patient is a ')
      .p('age_over_89', `${int(90, 103)}-year-old`)
      .t(' living alone.');
  }
  d.t(`\n\n${clinician()}\n${ORG.name}, ${clinic()}\n`);
  return d;
};

const labNotice = (): Doc => {
  const d = new Doc();
  const p = newPerson();
  switch (int(0, 2)) {
    case 0:
      greet(d, p);
      d.t('Your recent lab results are available. ');
      labPhrase(d);
      d.t(', and ');
      labPhrase(d);
      d.t(`. ${clinician()} reviewed them and would like to discuss your `).p('diagnosis', pick(CONDITIONS)[0]).t('.');
      break;
    case 1:
      d.t('LAB RESULT NOTICE\n');
      nameLine(d, p);
      if (chance(0.6)) dobLine(d, p);
      mrnLine(d, p);
      d.t('Collected: ')
        .p('date', fmtDate(new Date(Date.UTC(2025, int(0, 11), int(1, 28)))))
        .t(`, ${time()}\n`);
      d.t(pick(['Accession #: ', 'Accession number ']))
        .p('other_id', `${int(24, 25)}-${digits(6)}`)
        .t('\n');
      labPhrase(d);
      d.t(' (flagged)\n');
      if (chance(0.5)) {
        const [c, icd] = pick(CONDITIONS);
        d.t('Assessment: ').p('diagnosis', c).t(' - ').p('icd10', icd).t('\n');
      }
      break;
    default:
      d.t('Hi ').p('name', p.first).t(', ');
      d.t(pick(['good news: ', 'your results are in: ', 'quick update - ']));
      labPhrase(d);
      d.t(`. No change to your `)
        .p('medication', pick(DRUGS))
        .t(` dose for now. See the full report at `)
        .p('url', `https://portal.${ORG.domain}/results/${digits(8)}`)
        .t('.');
  }
  distractorSentence(d);
  signoff(d);
  return d;
};

const refill = (): Doc => {
  const d = new Doc();
  const p = newPerson();
  const drug = pick(DRUGS);
  switch (int(0, 3)) {
    case 0:
      d.t(`To: Refill Line\nFrom: `)
        .p('email', p.email)
        .t('\n\nHello, this is ')
        .p('name', `${p.first} ${p.last}`)
        .t(', born ')
        .p('dob', fmtDate(p.dob))
        .t('. I need a refill of my ')
        .p('medication', drug)
        .t(
          ` ${pick(['20 mg', '50 mcg', '10 mg tablets', '1000 mg'])}. My pharmacy is ${pick(['CVS on Main', 'Walgreens', 'the hospital pharmacy'])} (${ORG.pharmacyLine}). You can reach me at `,
        )
        .p('phone', p.phone)
        .t('.\n');
      break;
    case 1:
      d.t('REFILL REQUEST\n');
      nameLine(d, p);
      dobLine(d, p);
      d.t('Medication: ')
        .p('medication', drug)
        .t(` ${pick(['5 mg', '25 mg', '100 mg', '40 mg'])}, #${pick(['30', '90'])}, ${int(0, 3)} refills\n`);
      d.t(pick(['Rx #: ', 'Rx number ', 'Prescription #']))
        .p('other_id', digits(7))
        .t('\n');
      d.t(pick(['Callback: ', 'Cell: ', 'Mobile ']))
        .p('phone', chance(0.3) ? p.phone.replace(/\D/g, '').slice(-10) : p.phone)
        .t('\n');
      break;
    case 2: {
      const rel = newPerson();
      d.t(`Good afternoon, I am calling for my ${pick(['mother', 'father', 'husband', 'wife', 'son'])}, `)
        .p('name', `${rel.first} ${rel.last}`)
        .t('. ')
        .t(pick(['He', 'She']))
        .t(' is out of ')
        .p('medication', drug)
        .t(' and the pharmacy says the prescription expired. My number is ')
        .p('phone', p.phone)
        .t(`. Thanks, `)
        .p('name', p.first)
        .t('\n');
      break;
    }
    default:
      d.t('Hi ')
        .p('name', p.first)
        .t(', your ')
        .p('medication', drug)
        .t(` refill was sent to the pharmacy on `)
        .p('date', fmtDate(futureDate(), false))
        .t(`. Pick-up is after ${pmTime()}. Take it with food.`);
  }
  distractorSentence(d);
  signoff(d);
  return d;
};

const billing = (): Doc => {
  const d = new Doc();
  const p = newPerson();
  const amount = `$${int(15, 2400)}.${pad(int(0, 99))}`;
  switch (int(0, 2)) {
    case 0:
      greet(d, p);
      d.t(`Your statement is ready. Balance due: ${amount}. `)
        .t(pick(['Account #: ', 'Account number ', 'Acct ', 'Patient account no. ']))
        .p('account_number', pick([digits(8), `${digits(4)}-${digits(4)}`, `PA${digits(7)}`]))
        .t('.');
      d.t(' Date of service: ')
        .p('date', fmtDate(new Date(Date.UTC(2025, int(0, 11), int(1, 28)))))
        .t('.');
      break;
    case 1:
      d.t('Billing inquiry\n');
      nameLine(d, p);
      d.t('Guarantor account #').p('account_number', digits(9)).t('\n');
      d.t(pick(['Claim number: ', 'Claim #']))
        .p('other_id', `CLM${digits(8)}`)
        .t('\n');
      d.t('Insurance member ID: ')
        .p('health_plan_id', `${pick(['XKH', 'BCB', 'AET', 'MA'])}${digits(9)}`)
        .t(` Group #: ${digits(5)}\n`);
      d.t(`Amount: ${amount}\n`);
      if (chance(0.5)) {
        const [city, st, zip] = pick(CITIES);
        d.t('Billing address: ')
          .p('address', `${int(2, 9800)} ${pick(STREETS)} ${pick(SUFFIXES)}, ${city}`)
          .t(`, ${st} `)
          .p('zip', zip)
          .t('\n');
      }
      break;
    default:
      d.t('Hello ')
        .p('name', `${p.first} ${p.last}`)
        .t(`, we received your payment of ${amount}, thank you. Confirmation PAY-${digits(6)}. A receipt was sent to `)
        .p('email', p.email)
        .t('.');
      if (chance(0.5)) d.t(' Your SSN on file ends in ').t(digits(4)).t('.');
  }
  distractorSentence(d);
  signoff(d);
  return d;
};

/** Staff scheduling with no PHI at all: times, rooms, order numbers, main lines, staff addresses. */
const scheduling = (): Doc => {
  const d = new Doc();
  d.t(
    pick([
      `Hi team,\n\nThe ${clinic()} staff meeting moves to ${pick(['Thursday', 'Wednesday', 'Monday'])} at ${pmTime()} in ${room()}. Please bring the Q${int(1, 4)} coverage plan.`,
      `All,\n\nReminder that the fire drill is scheduled for ${pick(['next Tuesday', 'this Friday'])} at ${time()}. Assemble at Lot ${pick(['A', 'D'])}. Questions go to facilities@${ORG.domain} or ${ORG.mainLine}, ext. ${int(1000, 9999)}.`,
      `Hello,\n\nSupply order PO ${digits(10)} (gloves, ${int(20, 80)} boxes) arrives ${pick(['Monday', 'tomorrow'])} between ${time()} and ${pmTime()}. Ticket INC${digits(7)} tracks the delivery.`,
      `Team - the ${clinic()} on-call swap is approved: ${clinician()} covers ${pick(['Saturday', 'Sunday'])} 7:00 AM to 7:00 PM. Pager ${int(100, 999)}. See https://intranet.${ORG.domain}/oncall for the rota.`,
      `Hi,\n\nConference room ${int(100, 450)} is booked ${pick(['Tuesday', 'Thursday'])} ${time()}-${pmTime()} for the vendor demo. Dial-in ${ORG.mainLine}, access code ${digits(6)}#.`,
      `Good morning,\n\nThe EHR downtime window is ${pick(['Sunday', 'Saturday'])} from 1:00 AM to 3:00 AM. Use the paper forms in ${room()}. Version ${int(2, 9)}.${int(0, 9)} goes live after.`,
      `Hi all,\n\nBadge photos for new staff are taken in ${room()} on ${pick(['Mondays', 'Wednesdays'])} at ${pmTime()}. Contact hr@${ORG.domain}.`,
      `Hi ${clinic()} team,\n\nThe new infusion chairs arrive ${pick(['Monday', 'Thursday'])}. Vendor contact: support@${pick(['medequip', 'chairco', 'infusionworks'])}.example, 1-800-555-0${digits(3)}.`,
      `Dear Colleague,\n\nThe EHR client is updated to version ${int(8, 12)}.${int(0, 9)}.${int(0, 20)}.${int(1, 9)} tonight. Report issues at https://intranet.${ORG.domain}/helpdesk?queue=${int(10, 99)}.`,
      `Hello Front Desk,\n\nPlease move the ${pick(['Tuesday', 'Wednesday'])} ${time()} block for ${clinician()} to ${room()}. The clinic fax stays ${ORG.mainFax}.`,
    ]),
  );
  d.t(`\n\n${pick(STAFF)}\n`);
  if (chance(0.5)) d.t(`${ORG.name} | ${ORG.mainLine}\n`);
  return d;
};

const recordsRequest = (): Doc => {
  const d = new Doc();
  const p = newPerson();
  const [city, st, zip] = pick(CITIES);
  d.t('Records request\n\nI, ')
    .p('name', `${p.first} ${p.last}`)
    .t(', request a copy of my records. Date of birth ')
    .p('dob', fmtDate(p.dob))
    .t('. ');
  d.t(pick(['SSN: ', 'Social Security Number: ', 'SSN ']))
    .p(
      'ssn',
      pick([
        `${int(100, 665)}-${pad(int(1, 99))}-${pad(int(1, 9999), 4)}`,
        `${int(100, 665)} ${pad(int(1, 99))} ${pad(int(1, 9999), 4)}`,
        `${int(100, 665)}${pad(int(1, 99))}${pad(int(1, 9999), 4)}`,
      ]),
    )
    .t('. ');
  d.t(pick(["Driver's license: ", 'Driver’s License #', 'License number ']))
    .p('license_number', `${pick(['S', 'D', 'M'])}${digits(8)}`)
    .t('.\n');
  d.t('Mail to: ')
    .p('address', `${int(2, 9800)} ${pick(STREETS)} ${pick(SUFFIXES)}, ${city}`)
    .t(`, ${st} `)
    .p('zip', zip)
    .t('\n');
  if (chance(0.5)) d.t('Or email ').p('email', p.email).t('. ');
  if (chance(0.4))
    d.t('Parking permit for license plate ')
      .p('vehicle_id', `${int(1, 9)}${pick(['KLM', 'TRX', 'BPD'])}${digits(3)}`)
      .t('.');
  signoff(d);
  return d;
};

const portalSecurity = (): Doc => {
  const d = new Doc();
  const p = newPerson();
  greet(d, p);
  d.t('We noticed a new sign-in to your patient portal account from IP address ')
    .p('ip_address', `${int(11, 223)}.${int(0, 255)}.${int(0, 255)}.${int(1, 254)}`)
    .t(` at ${pmTime()}. If this was not you, reset your password at `)
    .p('url', `https://portal.${ORG.domain}/reset?token=${Array.from({ length: 24 }, () => pick([...'abcdef0123456789'])).join('')}`)
    .t(`. The account email is `)
    .p('email', p.email)
    .t('.');
  signoff(d);
  return d;
};

const deviceClinic = (): Doc => {
  const d = new Doc();
  const p = newPerson();
  greet(d, p);
  d.t(`Your remote ${pick(['pacemaker', 'defibrillator', 'glucose monitor'])} transmission was received. `)
    .t(pick(['Serial number: ', 'Device serial ', 'S/N ']))
    .p('device_id', `${pick(['PJN', 'RTX', 'G7'])}${digits(6)}${pick(['', 'H'])}`)
    .t('. ');
  d.t(`${clinician()} found no changes in your `)
    .p('diagnosis', pick(['atrial fibrillation', 'heart failure', 'type 1 diabetes']))
    .t('. Next check: ')
    .p('date', fmtDate(futureDate()))
    .t('.');
  signoff(d);
  return d;
};

const part2 = (): Doc => {
  const d = new Doc();
  const p = newPerson();
  switch (int(0, 1)) {
    case 0:
      greet(d, p);
      d.t('This confirms your intake at the Recovery Program on ')
        .p('date', fmtDate(futureDate(), chance(0.5)))
        .t(`. Bring your `)
        .p('part2', pick(['buprenorphine', 'Suboxone', 'methadone']))
        .t(' dose card.');
      break;
    default:
      d.t('Care coordination note\n');
      nameLine(d, p);
      mrnLine(d, p);
      d.t('Enrolled in treatment for ')
        .p('part2', pick(['opioid use disorder', 'alcohol use disorder', 'substance use disorder']))
        .t('; started ')
        .p('part2', pick(['naltrexone', 'Vivitrol', 'buprenorphine']))
        .t('. Do not redisclose (42 CFR Part 2).\n');
  }
  signoff(d);
  return d;
};

const KINDS: [string, () => Doc, number][] = [
  ['appointment_reminder', reminder, 60],
  ['referral', referral, 50],
  ['lab_notice', labNotice, 50],
  ['refill_request', refill, 50],
  ['billing', billing, 50],
  ['scheduling_no_phi', scheduling, 60],
  ['records_request', recordsRequest, 15],
  ['portal_security', portalSecurity, 10],
  ['device_clinic', deviceClinic, 10],
  ['part2', part2, 15],
];

const messages: Message[] = [];
for (const [kind, make, count] of KINDS) {
  for (let i = 0; i < count; i++) {
    const d = make();
    messages.push({ id: `${kind}-${pad(i + 1, 3)}`, kind, text: d.text, spans: d.spans });
  }
}
// Interleave kinds so any prefix of the file is a mix.
shuffle(messages);

fs.mkdirSync(OUT, { recursive: true });
fs.writeFileSync(path.join(OUT, 'corpus.jsonl'), `${messages.map((m) => JSON.stringify(m)).join('\n')}\n`);
const org = {
  note: 'What the organisation tells the detector for this corpus (ScanOptions). Generated by scripts/generate-phi-corpus.ts.',
  seed: SEED,
  contacts: [...new Set(contacts)].sort(),
  mrnPatterns: ['GH-?\\d{7}'],
  orgPhones: [ORG.mainLine, ORG.mainFax, ORG.pharmacyLine],
  orgDomains: [ORG.domain],
  orgAddresses: [ORG.address],
};
fs.writeFileSync(path.join(OUT, 'org.json'), `${JSON.stringify(org, null, 2)}\n`);
console.log(
  `wrote ${messages.length} messages, ${messages.reduce((n, m) => n + m.spans.length, 0)} gold spans, ${org.contacts.length} contacts to ${OUT}`,
);
