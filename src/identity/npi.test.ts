import { describe, expect, it } from 'vitest';
import { isValidNpi } from './npi.js';

describe('isValidNpi', () => {
  it('accepts the CMS worked example and refuses a changed digit, a wrong length and letters', () => {
    // CMS, "Requirements for the NPI check digit": 123456789 has check digit 3.
    expect(isValidNpi('1234567893')).toBe(true);
    expect(isValidNpi('1234567890')).toBe(false);
    expect(isValidNpi('1234567894')).toBe(false);
    expect(isValidNpi('123456789')).toBe(false);
    expect(isValidNpi('12345678a3')).toBe(false);
    // A second NPI often published as a valid example.
    expect(isValidNpi('1245319599')).toBe(true);
  });
});
