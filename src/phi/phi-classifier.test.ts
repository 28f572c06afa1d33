import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { holdsInMonitored } from './message-eval.js';
import { type ClassifierWeightsFile, DEFAULT_CLASSIFIER, decodeWeights } from './phi-classifier.js';
import weightsFile from './phi-classifier-weights.json' with { type: 'json' };
import { assessMessage, assessRules } from './phi-context.js';
import { RULE_FEATURES, TEXT_GROUPS } from './phi-features.js';
import { messageDecision } from './phi-policy.js';

const root = path.join(import.meta.dirname, '..', '..');
const weightsPath = path.join(import.meta.dirname, 'phi-classifier-weights.json');
const train = (...args: string[]) =>
  execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'scripts', 'train-phi.ts'), ...args], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });

// Written for this test (not copied from the corpus): clear holds and clear passes in the corpus's voices.
const HOLDS: [string, string, string][] = [
  ['result in words', 'Quick note', 'Hi Dana, your test came back and it is not what we hoped. Dr. Lee would like to see you Thursday.'],
  ['result told plainly', 'Labs', 'Hi Priya, your potassium was a bit low on Monday, so please start the supplement Dr. Chen sent over.'],
  [
    'referral with its reason',
    'Referral',
    'Hi Leo, we have sent your referral to the sleep clinic for your snoring and daytime tiredness.',
  ],
  ['Part 2 logistics', 'Check in', 'Hey Jordan, your counsellor at the methadone clinic asked me to remind you about Friday dosing.'],
  ['member id, prefixed', 'Statement', 'Dear Ms. Ruiz, your statement is ready. Member ID: XJH-4471-0932. Balance due $45.00.'],
  [
    'a receipt for a named customer, a drug not in the vocabulary told by its strength',
    'Receipt',
    'Receipt #55102\nCustomer: Dolores Whitfield\nZentrovix 10 mg tablets x 30 ... $12.40\nThank you for shopping with Pinecone Pharmacy.',
  ],
  [
    'an order for a named person, a drug known by its stem',
    'Your order',
    'Order #A-20931 for Marcus Bell\nemtricitabine/tenofovir 200/300 mg, 30 tablets, shipped in plain packaging.',
  ],
  [
    'a Medi-Cal BIC number in grouped form',
    'Coverage',
    'Hola Rosa, your Medi-Cal is active; the BIC ID we have is 9 4471 2290 8 B. Bring the card Thursday. Clínica del Valle',
  ],
  [
    'a Spanish greeting and a condition in Spanish',
    'Su consulta',
    'Estimada Sra. Peralta: el Dr. Vidal quiere hablar con usted sobre su presión alta en la próxima cita.',
  ],
  [
    'a referral in Portuguese the rules miss',
    'Pedido de consulta',
    'Cara colega, envio a Sra. Moreira para consulta de Cardiologia por palpitações frequentes desde o verão. Obrigada.',
  ],
];
const PASSES: [string, string, string][] = [
  ['minimal reminder, name and time only', 'Reminder', 'Dear Mr. Okafor, your appointment is on Tuesday at 3:30 PM.'],
  ['a short note', 'Tuesday', 'See you Tuesday.'],
  ['minimal reminder with an address', 'Reminder', 'Dear Mr. Okafor, your appointment is on Tuesday at 3:30 PM at 14 Elm Road.'],
  [
    'minimal reminder',
    'Reminder',
    'Hi Sam, a reminder that your appointment is tomorrow, 9:40 am, at our Main Street office. Reply C to confirm.',
  ],
  [
    'announcement with medical words',
    'Flu clinic',
    'Dear patients, our flu vaccine clinic runs every Saturday in October. Walk in, no appointment needed.',
  ],
  ['newsletter', 'Newsletter', 'This month: managing diabetes over the holidays, and our new cancer screening programme. All welcome.'],
  ['order and invoice numbers', 'Order', 'Your order #884213-22 has shipped. Invoice INV-2026-4471 is attached.'],
  ['staff logistics', 'Welcome', 'Welcome to the team, Maria! Your first shift is Monday at 7 am on Ward 4.'],
  [
    'an order for a named customer with nothing of health in it',
    'Order',
    'Order #55102 for Dolores Whitfield: 2 x garden hose 15 m, 1 x brass nozzle. Delivery on Thursday.',
  ],
  ['milligrams in a recipe', 'Newsletter', 'Our winter soup has only 140 mg sodium per serving. Recipe inside, all welcome!'],
];
// A charity event the rules hold on its condition word; the classifier scores it low (below 0.5).
const CHARITY = ['Volunteer', 'Dear Jo, thank you for volunteering at the cancer fun run on Saturday. Your t-shirt size is M.'] as const;

describe('the trained message classifier (phi-classifier.ts), the default hold decision', () => {
  it('loads the committed weights: 2^bits text weights, one per rule feature, thresholds in (0, 1), its training data named by hash', () => {
    const f = weightsFile as unknown as ClassifierWeightsFile & { trained_on: { part: string; sha256: string }[] };
    const model = decodeWeights(f);
    expect(model.text.length).toBe(1 << f.bits);
    expect(model.rules.length).toBe(RULE_FEATURES.length);
    expect(Object.keys(f.rule_weights).sort()).toEqual([...RULE_FEATURES].sort());
    for (const t of [model.threshold, model.thresholdAlone]) {
      expect(t).toBeGreaterThan(0);
      expect(t).toBeLessThan(1);
    }
    expect(model.text.some((w) => w !== 0)).toBe(true);
    // Every part it was trained on is in the corpus, unchanged.
    expect(f.trained_on.length).toBeGreaterThanOrEqual(4);
    for (const p of f.trained_on) {
      const file = path.join(root, 'eval', 'phi-messages', `${p.part}.jsonl`);
      expect(createHash('sha256').update(fs.readFileSync(file)).digest('hex'), p.part).toBe(p.sha256);
    }
    expect(() => decodeWeights({ ...f, text_weights: 'AAAA' })).toThrow(/bytes of text weights/);
  });

  it.each(HOLDS)('holds: %s', (_, subject, text) => {
    const a = assessMessage({ subject, text });
    expect(holdsInMonitored(a)).toBe(true);
    expect(a.phi).toBe(true);
  });

  it.each(PASSES)('lets pass: %s', (_, subject, text) => {
    const a = assessMessage({ subject, text });
    expect(holdsInMonitored(a)).toBe(false);
    expect(messageDecision(a, 'monitored').hold).toBe(false);
  });

  it('is deterministic, and its reasons name features, never the words of the message', () => {
    for (const [, subject, text] of [...HOLDS, ...PASSES]) {
      const a = assessMessage({ subject, text });
      const b = assessMessage({ subject, text });
      expect(a.classifier).toEqual(b.classifier);
      const names = new Set([...TEXT_GROUPS.map((g) => `text.${g}`), ...RULE_FEATURES.map((r) => `rule.${r}`)]);
      for (const n of a.classifier!.top) expect(names.has(n), n).toBe(true);
    }
  });

  it('adds a hold the rules miss and releases one the rules made; the hold reasons carry its probability', async () => {
    const [, s1, t1] = HOLDS.find((h) => h[0].includes('Portuguese'))!;
    expect(holdsInMonitored(assessRules({ subject: s1, text: t1 }))).toBe(false);
    const added = assessMessage({ subject: s1, text: t1 });
    expect(added).toMatchObject({ phi: true, sensitivity: 'high' });
    expect(added.classifier!.probability).toBeGreaterThanOrEqual(added.classifier!.threshold);

    // Releasing a rules hold needs a probability below the (low, fail-closed) threshold where the rules found PHI;
    // the mechanism is shown with that threshold at 0.5.
    const [s2, t2] = CHARITY;
    const rules2 = assessRules({ subject: s2, text: t2 });
    expect(holdsInMonitored(rules2)).toBe(true);
    const { classifyMessage } = await import('./phi-classifier.js');
    const released = classifyMessage(rules2, `${s2}\n${t2}`, s2.length, { ...DEFAULT_CLASSIFIER, threshold: 0.5 });
    expect(released.classifier!.probability).toBeLessThan(0.5);
    expect(holdsInMonitored(released)).toBe(false);
    expect(released).toMatchObject({ phi: false, disclosures: [], subjectPhi: false });
    // The span findings stay for the console's highlights.
    expect(released.findings.length).toBeGreaterThan(0);

    const reasons = messageDecision(added, 'monitored').reasons;
    expect(reasons).toEqual([
      expect.objectContaining({ code: 'phi', classifier_probability: Math.round(added.classifier!.probability * 1000) / 1000 }),
    ]);
    const top = (reasons[0] as { top_features: string[] }).top_features;
    expect(top.length).toBeGreaterThan(0);
    expect(top.join(' ')).not.toMatch(/moreira|palpita|cardiolog/i);
  });

  it('keeps the rules authoritative where they are exact: an SSN or Part 2 holds whatever the classifier says', () => {
    const never = { ...DEFAULT_CLASSIFIER, bias: -50, threshold: 0.99, thresholdAlone: 0.99 };
    const ssn = assessRules({ subject: 'Form', text: 'Hi Tom, the form still needs your SSN 219-09-9999 before Friday.' });
    expect(ssn.identifiers).toContain('ssn');
    const part2 = assessRules({
      subject: 'Group',
      text: 'hey Lucas, the tuesday counselling group at the recovery program moved to room B.',
    });
    expect(part2.part2).toBe(true);
    return import('./phi-classifier.js').then(({ classifyMessage }) => {
      for (const [rules, text] of [
        [ssn, 'Form\nHi Tom, the form still needs your SSN 219-09-9999 before Friday.'],
        [part2, 'Group\nhey Lucas, the tuesday counselling group at the recovery program moved to room B.'],
      ] as const) {
        const a = classifyMessage(rules, text, text.indexOf('\n'), never);
        expect(a.classifier!.probability).toBeLessThan(0.01);
        expect(holdsInMonitored(a)).toBe(true);
      }
    });
  });

  it('never releases a named reader\'s own condition or medication ("your atrial fibrillation"), whatever the classifier says', async () => {
    const { classifyMessage, ownedDisclosure } = await import('./phi-classifier.js');
    const never = { ...DEFAULT_CLASSIFIER, bias: -50, threshold: 0.99, thresholdAlone: 0.99 };
    const subject = 'Device check';
    const text = 'Hello Wen Li,\nYour home monitor upload arrived. Dr. Ortiz saw nothing new in your atrial fibrillation.';
    const rules = assessRules({ subject, text });
    expect(ownedDisclosure(rules, `${subject}\n${text}`, subject.length)).toBe(true);
    const a = classifyMessage(rules, `${subject}\n${text}`, subject.length, never);
    expect(a.classifier!.probability).toBeLessThan(0.01);
    expect(holdsInMonitored(a)).toBe(true);
    // Without the name, or without "your" before the term, the classifier decides as before.
    const anon = 'Your home monitor upload arrived. Nothing new was seen in the atrial fibrillation clinic today.';
    expect(ownedDisclosure(assessRules({ subject, text: anon }), `${subject}\n${anon}`, subject.length)).toBe(false);
    const unnamed = 'Your home monitor upload arrived. Dr. Ortiz saw nothing new in your atrial fibrillation.';
    expect(ownedDisclosure(assessRules({ subject, text: unnamed }), `${subject}\n${unnamed}`, subject.length)).toBe(false);
  });

  it("never holds for the organisation's own name: the classifier reads the text with it masked", () => {
    const orgNames = ['Riverside Heart Failure & Transplant'];
    const a = assessMessage(
      { subject: 'Hours', text: 'Hi Ana, Riverside Heart Failure & Transplant is open late on Thursdays.' },
      { orgNames },
    );
    expect(a.phi).toBe(false);
  });

  // The rules' regression cases (test/fixtures, written by the detector authors; not training data): the rules pass
  // all of them exactly (phi-context.test.ts); the classifier, trained on other writers' mail, may differ on a few.
  it.each(['phi-judgement-cases.jsonl', 'phi-judgement-cases-round2.jsonl'])(
    'gets at least 97%% of the regression cases in %s right, and misses none of their holds by more than 1%%',
    (name) => {
      const cases = fs
        .readFileSync(path.join(root, 'test', 'fixtures', name), 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as { id: string; hold: boolean; subject: string; text: string });
      const wrong = cases.filter((c) => holdsInMonitored(assessMessage({ subject: c.subject, text: c.text })) !== c.hold);
      expect(wrong.length / cases.length, wrong.map((c) => c.id).join(', ')).toBeLessThanOrEqual(0.03);
      const holds = cases.filter((c) => c.hold);
      expect(wrong.filter((c) => c.hold).length / holds.length).toBeLessThanOrEqual(0.01);
    },
  );
});

describe('scripts/train-phi.ts', () => {
  it('reproduces the committed weights from the corpus, byte for byte (fixed seed)', () => {
    expect(train('--check')).toMatch(/reproduced/);
  }, 120_000);

  it('trains on a small corpus, with cross-validation, and writes weights the classifier loads', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-train-phi-'));
    try {
      const rows = [...HOLDS.map((h) => [...h, true] as const), ...PASSES.map((p) => [...p, false] as const)];
      const lines = [];
      for (let k = 0; k < 3; k++)
        for (const [i, [kind, subject, text, hold]] of rows.entries())
          lines.push(JSON.stringify({ id: `t-${k}-${i}`, kind: kind.split(' ')[0], hold, subject, text: `${text} (${k})` }));
      fs.writeFileSync(path.join(dir, 'tiny.jsonl'), `${lines.join('\n')}\n`);
      const out = path.join(dir, 'weights.json');
      const log = train('--corpus', dir, '--out', out, '--folds', '3', '--epochs', '3');
      expect(log).toMatch(/3-fold CV/);
      const f = JSON.parse(fs.readFileSync(out, 'utf8')) as ClassifierWeightsFile & { trained_on: { part: string }[] };
      expect(f.trained_on.map((p) => p.part)).toEqual(['tiny']);
      const model = decodeWeights(f);
      expect(model.text.length).toBe(1 << f.bits);
      // The committed file is untouched.
      expect(fs.readFileSync(weightsPath, 'utf8')).toContain('"format": "mailward-phi-linear/1"');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
