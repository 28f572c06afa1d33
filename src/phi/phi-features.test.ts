import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { DEFAULT_CLASSIFIER } from './phi-classifier.js';
import { hashTextFeatures, scoreTextFeatures, TEXT_GROUPS } from './phi-features.js';

/**
 * The send path scores hashed features with its own walk (scoreTextFeatures); training reads them through a sink
 * (hashTextFeatures). They must agree exactly, or the weights would score other features than they were trained on.
 */
const dir = path.join(import.meta.dirname, '..', '..', 'eval', 'phi-messages');
const texts = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.jsonl'))
  .flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean))
  .map((l) => JSON.parse(l) as { subject?: string; text: string })
  .map((m) => ({ low: `${m.subject ?? ''}\n${m.text}`.toLowerCase(), subjectEnd: (m.subject ?? '').length }));

it('scores every corpus message with the same sums and counts as the training walk, to the last bit', () => {
  expect(texts.length).toBeGreaterThan(2000);
  const w = DEFAULT_CLASSIFIER.text;
  const mask = (1 << DEFAULT_CLASSIFIER.bits) - 1;
  const sums = new Float64Array(TEXT_GROUPS.length);
  const counts = new Float64Array(TEXT_GROUPS.length);
  let differ = 0;
  for (const { low, subjectEnd } of [...texts, { low: 'a1c 7.9 café, naïve co-op\nx', subjectEnd: 3 }, { low: '', subjectEnd: 0 }]) {
    const s0 = new Float64Array(TEXT_GROUPS.length);
    const c0 = new Float64Array(TEXT_GROUPS.length);
    hashTextFeatures(low, subjectEnd, {
      add: (h, g) => {
        s0[g]! += h < 0 ? -w[h & mask]! : w[h & mask]!;
        c0[g]!++;
      },
    });
    scoreTextFeatures(low, subjectEnd, w, mask, sums, counts);
    for (let g = 0; g < TEXT_GROUPS.length; g++) if (s0[g] !== sums[g] || c0[g] !== counts[g]) differ++;
  }
  expect(differ).toBe(0);
});
