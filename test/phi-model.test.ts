import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/app/config.js';
import { createContainer } from '../src/app/container.js';
import { createLogger } from '../src/kernel/log.js';
import { createOutboundScreen } from '../src/phi/outbound-screen.js';
import { DEFAULT_CLASSIFIER, scoreMessage } from '../src/phi/phi-classifier.js';
import { assessMessage, readForJudgement } from '../src/phi/phi-context.js';
import { loadPhiModel, type PhiModelSidecar } from '../src/phi/phi-model.js';
import { freshDatabase, tempDir, testDialects } from './support/dialects.js';
import { tinyLinearClassifier } from './support/onnx-tiny.js';

// A vocabulary the rules do not know, so that what the model adds is visible: "zorvex" is a made-up drug name.
const VOCAB = ['zorvex', 'quarterly', 'hello', 'newsletter'];
const WEIGHTS = [4, 0.5, -0.25, -3];
const BIAS = -1.5;
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

const dir = tempDir('mw-phi-model');
const root = path.join(import.meta.dirname, '..');
const write = (name: string, weights = WEIGHTS, sidecar: Partial<PhiModelSidecar> = {}) => {
  const file = path.join(dir, `${name}.onnx`);
  fs.writeFileSync(file, tinyLinearClassifier(weights, BIAS));
  fs.writeFileSync(
    path.join(dir, `${name}.json`),
    JSON.stringify({ kind: 'bag-of-words-classifier', vocabulary: VOCAB, threshold: 0.6, ...sidecar }),
  );
  return file;
};
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const screenContent = (subject: string, text: string) => ({
  to: ['p@example.org'],
  cc: [],
  bcc: [],
  subject,
  text,
  html: null,
  attachments: [],
});
const noConsent = { consentFor: async () => ({ status: 'granted' as const, categories: [] }) };
const granted = { refused: 0, firstRefused: -1, held: 0, categoryHeld: 0, firstCategoryHeld: -1, category: null };

describe('optional local PHI model (ONNX, onnxruntime-node)', () => {
  it('loads a model the test builds and scores a bag of words as the linear model defines', async () => {
    const model = (await loadPhiModel({ phi: { modelPath: write('linear') } }))!;
    try {
      // "Zorvex zorvex hello": counts 2, 0, 1, 0.
      expect(await model.probability('Zorvex zorvex hello')).toBeCloseTo(sigmoid(2 * 4 - 0.25 + BIAS), 5);
      expect(await model.probability('the quarterly newsletter')).toBeCloseTo(sigmoid(0.5 - 3 + BIAS), 5);
      expect(await model.probability('nothing in the vocabulary')).toBeCloseTo(sigmoid(BIAS), 5);
    } finally {
      await model.release();
    }
  });

  it('adds a hold the rules did not make, raises confidence on one they did, and never releases one', async () => {
    const model = (await loadPhiModel({ phi: { modelPath: write('combine') } }))!;
    try {
      const rulesPass = assessMessage({ subject: 'Pickup', text: 'Hi Dana, your zorvex is ready at the front desk.' });
      expect(rulesPass.phi).toBe(false);
      const added = await model.combine(rulesPass, 'Pickup\nHi Dana, your zorvex is ready at the front desk.');
      expect(added).toMatchObject({ phi: true, sensitivity: 'high' });
      expect(added.modelProbability).toBeGreaterThan(0.6);

      const rulesHold = assessMessage({ subject: 'Results', text: 'Hi Dana, your strep test came back negative.' });
      expect(rulesHold.phi).toBe(true);
      const kept = await model.combine(rulesHold, 'the quarterly newsletter');
      expect(kept.phi).toBe(true);
      expect(kept.sensitivity).toBe(rulesHold.sensitivity);
      expect(kept.modelProbability).toBeLessThan(0.6);

      // An announcement to everyone stays an announcement whatever the model says.
      const notice = assessMessage({ subject: 'Closed', text: 'All patients: the clinic is closed on Monday. Zorvex zorvex.' });
      expect(notice.broadcast).toBe(true);
      expect((await model.combine(notice, 'zorvex zorvex')).phi).toBe(false);
    } finally {
      await model.release();
    }
  });

  it('holds on the send path what the model flags, with its probability in the reason', async () => {
    const model = (await loadPhiModel({ phi: { modelPath: write('screen') } }))!;
    try {
      const withModel = createOutboundScreen({ consent: noConsent, model });
      const rulesOnly = createOutboundScreen({ consent: noConsent });
      const c = screenContent('Pickup', 'Hi Dana, your zorvex is ready at the front desk.');
      expect(rulesOnly.holdReasons(await rulesOnly.scan(c, 'clinic.example'), 'monitored', null, granted).reasons).toEqual([]);
      const reasons = withModel.holdReasons(await withModel.scan(c, 'clinic.example'), 'monitored', null, granted).reasons;
      expect(reasons).toEqual([
        {
          code: 'phi',
          types: ['name'],
          about: 'recipient',
          disclosures: [],
          classifier_probability: expect.any(Number),
          top_features: expect.any(Array),
          model_probability: expect.any(Number),
        },
      ]);
    } finally {
      await model.release();
    }
  });

  it('runs the default classifier exported to ONNX (npm run export:phi-onnx) with the same probabilities', async () => {
    const file = path.join(dir, 'default.onnx');
    execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'scripts', 'export-phi-onnx.ts'), file], { cwd: root });
    const model = (await loadPhiModel({ phi: { modelPath: file } }))!;
    try {
      for (const [subject, text] of [
        ['Labs', 'Hi Priya, your potassium was a bit low on Monday, so please start the supplement.'],
        ['Reminder', 'Hi Sam, your appointment is tomorrow at 9:40 am at our Main Street office.'],
        ['Newsletter', 'This month: managing diabetes over the holidays. All welcome.'],
      ] as const) {
        const { rules, full, subjectEnd } = readForJudgement({ subject, text });
        const expected = scoreMessage(DEFAULT_CLASSIFIER, rules, full, subjectEnd).probability;
        expect(await model.probability(`${subject}\n${text}`, rules)).toBeCloseTo(expected, 4);
      }
    } finally {
      await model.release();
    }
  }, 60_000);

  it('refuses, naming MAILWARD_PHI_MODEL, a missing model, a missing or invalid sidecar and bytes that are not ONNX', async () => {
    await expect(loadPhiModel({ phi: { modelPath: path.join(dir, 'absent.onnx') } })).rejects.toThrow(/MAILWARD_PHI_MODEL: no model file/);
    const lonely = path.join(dir, 'lonely.onnx');
    fs.writeFileSync(lonely, tinyLinearClassifier(WEIGHTS, BIAS));
    await expect(loadPhiModel({ phi: { modelPath: lonely } })).rejects.toThrow(/MAILWARD_PHI_MODEL: no sidecar/);
    const badSidecar = write('bad-sidecar', WEIGHTS, { kind: 'token-classifier' as 'bag-of-words-classifier' });
    await expect(loadPhiModel({ phi: { modelPath: badSidecar } })).rejects.toThrow(/MAILWARD_PHI_MODEL: sidecar .* is invalid \(kind/);
    const wrongLabel = write('wrong-label', WEIGHTS, { hold_label: 'phi' });
    await expect(loadPhiModel({ phi: { modelPath: wrongLabel } })).rejects.toThrow(/hold_label "phi"/);
    const garbage = write('garbage');
    fs.writeFileSync(garbage, Buffer.from('not a model'));
    await expect(loadPhiModel({ phi: { modelPath: garbage } })).rejects.toThrow(/MAILWARD_PHI_MODEL: onnxruntime could not load/);
    const names = write('names', WEIGHTS, { input: 'tokens' });
    await expect(loadPhiModel({ phi: { modelPath: names } })).rejects.toThrow(/input\/output names are input \/ output/);
    expect(await loadPhiModel({ phi: { modelPath: null } })).toBeNull();
  });

  for (const dialect of testDialects()) {
    it(`stops the start when MAILWARD_PHI_MODEL points to nothing, and starts with a model that loads (${dialect})`, async () => {
      const fresh = await freshDatabase(dialect);
      try {
        const env = { ...fresh.env, MAILWARD_PHI_MODEL: path.join(dir, 'nowhere.onnx') };
        expect(loadConfig(env).phi.modelPath).toBe(path.join(dir, 'nowhere.onnx'));
        await expect(
          createContainer(loadConfig(env), { createMasterKey: true, logger: createLogger({ level: 'silent' }) }),
        ).rejects.toMatchObject({
          code: 'phi_model_unavailable',
          message: expect.stringContaining('MAILWARD_PHI_MODEL'),
        });
        const c = await createContainer(loadConfig({ ...env, MAILWARD_PHI_MODEL: write(`start-${dialect}`) }), {
          createMasterKey: true,
          logger: createLogger({ level: 'silent' }),
        });
        await c.close();
      } finally {
        await fresh.drop();
      }
    });
  }
});
