import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { addressesOf, fieldValues, parseAttributionJson } from '../../verifier/src/index.js';
import { attributionHeaders } from './attribution-headers.js';

const input = {
  agent: { address: 'scheduling@hospital.example', name: 'Planificación Ñandú' },
  responsible: [
    { name: 'Dr. José "Pepe" Álvarez', email: 'alvarez@hospital.example' },
    { name: 'Nurse Kim', email: 'kim@hospital.example' },
  ],
  onBehalfOf: { name: 'Dr. Li', email: 'li@hospital.example' },
  operator: 'hospital.example',
};

describe('attribution header fields', () => {
  it('are 7-bit, folded under 78 columns, and unfold to the JSON the identity claims hash', () => {
    const { lines, jsonHash } = attributionHeaders(input);
    expect(/^[\x20-\x7e\r\n]*$/.test(lines)).toBe(true);
    for (const l of lines.split('\r\n')) expect(l.length).toBeLessThanOrEqual(78);
    const [json] = fieldValues(lines, 'Agent-Attribution-JSON');
    expect(createHash('sha256').update(json!).digest('hex')).toBe(jsonHash);
    expect(parseAttributionJson(json!)).toEqual({
      agent: input.agent.address,
      agent_name: input.agent.name,
      responsible_humans: input.responsible,
      on_behalf_of: input.onBehalfOf,
      operator: 'hospital.example',
    });
    const [human] = fieldValues(lines, 'Agent-Attribution');
    expect(addressesOf(human!)).toEqual(['alvarez@hospital.example', 'kim@hospital.example']);
    // RFC 2047: a non-ASCII display name is an encoded-word; an ASCII one with specials is quoted.
    expect(human).toContain('=?UTF-8?B?');
    expect(attributionHeaders({ ...input, responsible: [{ name: 'Dr. Kim', email: 'k@h.example' }] }).lines).toContain(
      '"Dr. Kim" <k@h.example>',
    );
  });
});
