import { expect, it } from 'vitest';
import { compareSpanDigests, computeSpanDigests, readSpanSnapshot } from '../scripts/phi-spans.js';

/**
 * The span findings are pinned message by message (scripts/phi-spans.ts): for
 * every corpus message, the findings of scanText (with and without the
 * organisation's settings) and of scanMessage (subject, text and the text as
 * HTML): type, offsets, confidence, detector and field. A change made for speed
 * must not move any of them; a change of what the scanner finds rewrites the
 * snapshot with `--write` and says so.
 */
it('finds in every corpus message the recorded span findings', () => {
  const expected = readSpanSnapshot();
  expect(expected.length).toBeGreaterThan(3000);
  const diffs = compareSpanDigests(expected, computeSpanDigests());
  expect(diffs.slice(0, 20)).toEqual([]);
});

it('notices a changed, missing or new message', () => {
  const [a, b] = readSpanSnapshot();
  const diffs = compareSpanDigests(
    [a!, b!],
    [
      { ...a!, digest: '0000000000000000' },
      { key: 'new/1', count: 0, digest: b!.digest },
    ],
  );
  expect(diffs).toHaveLength(3);
});
