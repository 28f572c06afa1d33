import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readVectorJson } from '../../test/support/vectors.js';
import { leafHash } from './merkle.js';
import {
  checkpointText,
  openNote,
  parseCheckpointText,
  parseSignerKey,
  parseVerifierKey,
  rawPublicKey,
  signerFromKey,
  signNote,
  verifierKey,
} from './signed-note.js';

// Go's sumdb note package reference vector (C2SP signed-note), vendored.
const NOTE = readVectorJson<{ verifier_key: string; signer_key: string; text: string; signature_line: string }>(
  'signed-note/peter-neumann.json',
);
const VKEY = NOTE.verifier_key;
const SKEY = NOTE.signer_key;
const TEXT = NOTE.text;
const SIG_LINE = `${NOTE.signature_line}\n`;

describe('C2SP signed notes', () => {
  it('reproduces the PeterNeumann reference signature byte for byte', () => {
    const signer = parseSignerKey(SKEY);
    const { note } = signNote(TEXT, signer);
    expect(note).toBe(`${TEXT}\n${SIG_LINE}`);
    expect(verifierKey('PeterNeumann', rawPublicKey(signer.privateKey))).toBe(VKEY);
  });

  it('opens the reference note with the reference verifier key and refuses an edited one', () => {
    const v = parseVerifierKey(VKEY);
    expect(openNote(`${TEXT}\n${SIG_LINE}`, v).text).toBe(TEXT);
    expect(() => openNote(`${TEXT.replace('answer', 'answers')}\n${SIG_LINE}`, v)).toThrow(/does not verify/);
    expect(() => openNote(`${TEXT}\n`, v)).toThrow();
  });

  it('signs and opens a tlog checkpoint with a fresh key', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const signer = signerFromKey('hospital.example/mailward-audit', privateKey);
    const root = leafHash(Buffer.from('x'));
    const { note } = signNote(checkpointText('hospital.example/mailward-audit', 42, root), signer);
    const opened = openNote(note, parseVerifierKey(verifierKey(signer.name, rawPublicKey(privateKey))));
    expect(parseCheckpointText(opened.text)).toEqual({ origin: 'hospital.example/mailward-audit', size: 42, root });
  });
});
