import { describe, expect, it } from 'vitest';
import pkg from '../package.json' with { type: 'json' };

describe('runtime', () => {
  it('runs on a supported Node.js (22.12 or later; CI uses 24 LTS), as package.json engines says', () => {
    const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
    console.log(`node ${process.version}`);
    expect(major > 22 || (major === 22 && minor >= 12)).toBe(true);
    expect(pkg.engines.node).toBe('>=22.12');
  });
});
