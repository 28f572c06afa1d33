import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { manifest, readVector } from './support/vectors.js';

describe('vendored test vectors', () => {
  it('holds every file of test/vectors/MANIFEST.sha256, unchanged', () => {
    const entries = manifest();
    // The transparency-dev testdata alone is about 190 files; a truncated manifest fails too.
    expect(entries.length).toBeGreaterThan(190);
    for (const { file, sha256 } of entries) expect(createHash('sha256').update(readVector(file)).digest('hex'), file).toBe(sha256);
  });
});
