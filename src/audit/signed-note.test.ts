import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
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

// ../shared/vectors/README.md: Go's sumdb note package reference vector.
const VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const SIG_LINE = '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';

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
