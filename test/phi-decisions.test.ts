import { expect, it } from 'vitest';
import { compareDecisions, computeDecisions, readSnapshot } from '../scripts/phi-decisions.js';

/**
 * The hold decision is pinned message by message (scripts/phi-decisions.ts):
 * every corpus message, read as text, as HTML and with organisation settings,
 * gets the hold, the judgement (digest of findings, cues, disclosures,
 * identifiers...) and the classifier probability (to 1e-9) recorded in
 * test/phi-decisions.json. A change made for speed must not move any of them; a
 * change of the decision itself (retrained weights, a new rule) rewrites the
 * snapshot with `--write` and says so.
 */
it('gives every corpus message the recorded hold decision, judgement and probability', () => {
  const expected = readSnapshot();
  expect(expected.length).toBeGreaterThan(8000);
  const diffs = compareDecisions(expected, computeDecisions());
  expect(diffs.slice(0, 20)).toEqual([]);
});

it('notices a changed decision, judgement or probability', () => {
  const [a, b, c] = readSnapshot();
  const diffs = compareDecisions(
    [a!, b!, c!],
    [
      { ...a!, hold: !a!.hold },
      { ...b!, digest: '0000000000000000' },
      { ...c!, probability: c!.probability + 1e-6 },
    ],
  );
  expect(diffs).toHaveLength(3);
});
