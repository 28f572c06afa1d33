import { createHash, createPublicKey, type KeyObject, verify } from 'node:crypto';

/**
 * C2SP signed-note (c2sp.org/signed-note) and tlog-cosignature (c2sp.org/tlog-cosignature)
 * verification: Ed25519 note signatures (key type 0x01) and cosignature/v1 (type 0x04).
 */

const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');
export const ALG_ED25519 = 0x01;
export const ALG_COSIGNATURE_V1 = 0x04;

export type Vkey = { name: string; keyId: Buffer; type: number; publicKey: KeyObject; raw: Buffer };

/** signed-note: key ID = SHA-256(name || 0x0A || type || public key)[:4]. */
export const keyIdOf = (name: string, type: number, pub: Uint8Array): Buffer =>
  createHash('sha256')
    .update(Buffer.from(`${name}\n`, 'utf8'))
    .update(Buffer.from([type]))
    .update(pub)
    .digest()
    .subarray(0, 4);

export const ed25519FromRaw = (raw: Uint8Array): KeyObject =>
  createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: 'der', type: 'spki' });

/** Parses `<name>+<hex key id>+<base64(type || key)>`; throws on a malformed or mismatched key. */
export const parseVkey = (vkey: string): Vkey => {
  const parts = vkey.trim().split('+');
  const [name, hexId] = parts;
  const raw = Buffer.from(parts.slice(2).join('+'), 'base64');
  if (!name || !hexId || !/^[0-9a-f]{8}$/.test(hexId) || raw.length !== 33) throw new Error('malformed verifier key');
  const type = raw[0]!;
  if (type !== ALG_ED25519 && type !== ALG_COSIGNATURE_V1) throw new Error('verifier key is neither Ed25519 (0x01) nor cosignature/v1 (0x04)');
  const pub = raw.subarray(1);
  const keyId = keyIdOf(name, type, pub);
  if (keyId.toString('hex') !== hexId) throw new Error('verifier key id does not match its key');
  return { name, keyId, type, publicKey: ed25519FromRaw(pub), raw: pub };
};

export type Note = { text: string; signatures: { name: string; sig: Buffer; line: string }[] };

/** Splits a note into its text (ending in a newline) and signature lines; throws when malformed. */
export const parseNote = (note: string): Note => {
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new Error('malformed note');
  const text = note.slice(0, split + 1);
  if (text.includes('\n\n')) throw new Error('malformed note');
  const signatures = note
    .slice(split + 2, -1)
    .split('\n')
    .map((line) => {
      const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
      if (!m) throw new Error('malformed signature line');
      return { name: m[1]!, sig: Buffer.from(m[2]!, 'base64'), line };
    });
  if (signatures.length === 0) throw new Error('note has no signature');
  return { text, signatures };
};

/** True when a signature line by `key` verifies over the note text (Ed25519 note signature). */
export const hasNoteSignature = (n: Note, key: Vkey): boolean =>
  key.type === ALG_ED25519 &&
  n.signatures.some(
    (s) =>
      s.name === key.name &&
      s.sig.length === 68 &&
      s.sig.subarray(0, 4).equals(key.keyId) &&
      verify(null, Buffer.from(n.text, 'utf8'), key.publicKey, s.sig.subarray(4)),
  );

/**
 * tlog-cosignature v1: the line holds key ID || u64 timestamp || Ed25519 signature over
 * "cosignature/v1\ntime <t>\n" || note text. Returns the timestamp, or null when absent or bad.
 */
export const cosignatureTime = (n: Note, key: Vkey): number | null => {
  if (key.type !== ALG_COSIGNATURE_V1) return null;
  for (const s of n.signatures) {
    if (s.name !== key.name || s.sig.length !== 4 + 8 + 64 || !s.sig.subarray(0, 4).equals(key.keyId)) continue;
    const t = s.sig.readBigUInt64BE(4);
    const msg = Buffer.from(`cosignature/v1\ntime ${t}\n${n.text}`, 'utf8');
    if (verify(null, msg, key.publicKey, s.sig.subarray(12))) return Number(t);
  }
  return null;
};

/** tlog-checkpoint body: origin, decimal size, base64 root hash, then optional extension lines. */
export const parseCheckpoint = (text: string): { origin: string; size: number; root: Buffer } => {
  const [origin, sizeText, rootText] = text.split('\n');
  if (!origin || !sizeText || !rootText || !/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new Error('malformed checkpoint');
  const root = Buffer.from(rootText, 'base64');
  const size = Number(sizeText);
  if (root.length !== 32 || root.toString('base64') !== rootText || !Number.isSafeInteger(size)) throw new Error('malformed checkpoint');
  return { origin, size, root };
};
