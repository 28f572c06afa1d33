import { createPrivateKey, createPublicKey, hash as oneShotHash, type KeyObject, sign, verify } from 'node:crypto';

/**
 * C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and the
 * tlog-checkpoint body they carry (c2sp.org/tlog-checkpoint), so standard
 * transparency-log witnesses can check Mailward's audit checkpoints.
 */

const ALG_ED25519 = 0x01;
// RFC 8410: DER prefixes that wrap a raw 32-byte Ed25519 seed or public key.
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');
const EM_DASH = '\u2014';

export class NoteError extends Error {
  override name = 'NoteError';
}

/** signed-note: key ID = first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key). */
export const noteKeyId = (name: string, publicKey: Buffer): Buffer =>
  oneShotHash('sha256', Buffer.concat([Buffer.from(`${name}\n`, 'utf8'), Buffer.from([ALG_ED25519]), publicKey]), 'buffer').subarray(0, 4);

export const rawPublicKey = (key: KeyObject): Buffer => {
  const der = (key.type === 'public' ? key : createPublicKey(key)).export({ type: 'spki', format: 'der' });
  return der.subarray(der.length - 32);
};

export const ed25519PublicFromRaw = (raw: Buffer): KeyObject => {
  if (raw.length !== 32) throw new NoteError('an Ed25519 public key is 32 bytes');
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: 'der', type: 'spki' });
};

const validName = (name: string) => name.length > 0 && !/[\s+]/.test(name);

/** `<name>+<hex key id>+<base64(0x01 || public key)>`, the verifier key string witnesses are given. */
export const verifierKey = (name: string, publicKey: Buffer): string => {
  if (!validName(name)) throw new NoteError('key names contain no spaces or plus signs');
  return `${name}+${noteKeyId(name, publicKey).toString('hex')}+${Buffer.concat([Buffer.from([ALG_ED25519]), publicKey]).toString('base64')}`;
};

export type NoteVerifier = { name: string; keyId: Buffer; publicKey: KeyObject };

export const parseVerifierKey = (vkey: string): NoteVerifier => {
  const [name, hexId, ...rest] = vkey.split('+');
  const b64 = rest.join('+');
  if (!name || !hexId || !b64 || !/^[0-9a-f]{8}$/.test(hexId)) throw new NoteError('malformed verifier key');
  const raw = Buffer.from(b64, 'base64');
  if (raw.length !== 33 || raw[0] !== ALG_ED25519) throw new NoteError('verifier key is not Ed25519');
  const pub = raw.subarray(1);
  const keyId = noteKeyId(name, pub);
  if (keyId.toString('hex') !== hexId) throw new NoteError('verifier key id does not match its key');
  return { name, keyId, publicKey: ed25519PublicFromRaw(pub) };
};

export type NoteSigner = { name: string; keyId: Buffer; privateKey: KeyObject };

/** Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>` (Go's sumdb note format). */
export const parseSignerKey = (skey: string): NoteSigner => {
  // The base64 key may itself hold '+', so only the first four separators count.
  const parts = skey.split('+');
  if (parts.length < 5 || parts[0] !== 'PRIVATE' || parts[1] !== 'KEY') throw new NoteError('malformed signer key');
  const [, , name, hexId] = parts as [string, string, string, string];
  const b64 = parts.slice(4).join('+');
  const raw = Buffer.from(b64, 'base64');
  if (raw.length !== 33 || raw[0] !== ALG_ED25519) throw new NoteError('signer key is not Ed25519');
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, raw.subarray(1)]), format: 'der', type: 'pkcs8' });
  const keyId = noteKeyId(name, rawPublicKey(privateKey));
  if (keyId.toString('hex') !== hexId) throw new NoteError('signer key id does not match its key');
  return { name, keyId, privateKey };
};

export const signerFromKey = (name: string, privateKey: KeyObject): NoteSigner => {
  if (!validName(name)) throw new NoteError('key names contain no spaces or plus signs');
  return { name, keyId: noteKeyId(name, rawPublicKey(privateKey)), privateKey };
};

/** Signs `text` (which must end in a newline and hold no blank line); returns the note and the raw signature. */
export const signNote = (text: string, signer: NoteSigner): { note: string; signature: Buffer } => {
  if (!text.endsWith('\n') || text.includes('\n\n')) throw new NoteError('note text must end with a newline and hold no blank line');
  const signature = sign(null, Buffer.from(text, 'utf8'), signer.privateKey);
  const line = `${EM_DASH} ${signer.name} ${Buffer.concat([signer.keyId, signature]).toString('base64')}\n`;
  return { note: `${text}\n${line}`, signature };
};

/**
 * Opens a signed note: returns its text once a signature by `verifier` checks.
 * Signatures by unknown keys are ignored, as the spec allows. Throws NoteError.
 */
export const openNote = (note: string, verifier: NoteVerifier): { text: string; signature: Buffer } => {
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new NoteError('malformed note');
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split('\n');
  for (const line of lines) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) throw new NoteError('malformed signature line');
    const raw = Buffer.from(m[2]!, 'base64');
    if (m[1] !== verifier.name || raw.length < 5 || !raw.subarray(0, 4).equals(verifier.keyId)) continue;
    const signature = raw.subarray(4);
    if (!verify(null, Buffer.from(text, 'utf8'), verifier.publicKey, signature)) throw new NoteError('note signature does not verify');
    return { text, signature };
  }
  throw new NoteError('no signature by the expected key');
};

/** tlog-checkpoint body: origin, tree size in decimal, root hash in base64, each on its own line. */
export const checkpointText = (origin: string, size: number, root: Buffer): string => `${origin}\n${size}\n${root.toString('base64')}\n`;

export const parseCheckpointText = (text: string): { origin: string; size: number; root: Buffer } => {
  const lines = text.split('\n');
  const [origin, sizeText, rootText] = lines;
  if (!origin || !sizeText || !rootText || !/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new NoteError('malformed checkpoint');
  const root = Buffer.from(rootText, 'base64');
  const size = Number(sizeText);
  if (root.length !== 32 || !Number.isSafeInteger(size)) throw new NoteError('malformed checkpoint');
  return { origin, size, root };
};

const ALG_COSIGNATURE_V1 = 0x04;

/**
 * Checks that a witness signed `note`: either a c2sp.org/tlog-cosignature
 * cosignature/v1 (verifier key algorithm 0x04; the signature line holds the
 * key ID, an 8-byte big-endian timestamp and an Ed25519 signature over
 * `cosignature/v1\ntime <timestamp>\n` followed by the note text), or a
 * plain Ed25519 note signature (0x01). Returns the cosignature's time, if any.
 * Throws NoteError.
 */
export const openWitnessSignature = (note: string, witnessKey: string): { time: number | null } => {
  const [name, hexId, ...rest] = witnessKey.trim().split('+');
  const raw = Buffer.from(rest.join('+'), 'base64');
  if (!name || !hexId || raw.length !== 33) throw new NoteError('malformed witness key');
  if (raw[0] === ALG_ED25519) {
    openNote(note, parseVerifierKey(witnessKey.trim()));
    return { time: null };
  }
  if (raw[0] !== ALG_COSIGNATURE_V1) throw new NoteError('witness key is neither Ed25519 nor cosignature/v1');
  const pub = raw.subarray(1);
  const keyId = oneShotHash(
    'sha256',
    Buffer.concat([Buffer.from(`${name}\n`, 'utf8'), Buffer.from([ALG_COSIGNATURE_V1]), pub]),
    'buffer',
  ).subarray(0, 4);
  if (keyId.toString('hex') !== hexId) throw new NoteError('witness key id does not match its key');
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new NoteError('malformed note');
  const text = note.slice(0, split + 1);
  for (const line of note.slice(split + 2, -1).split('\n')) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) throw new NoteError('malformed signature line');
    const sig = Buffer.from(m[2]!, 'base64');
    if (m[1] !== name || sig.length !== 4 + 8 + 64 || !sig.subarray(0, 4).equals(keyId)) continue;
    const time = sig.readBigUInt64BE(4);
    const message = Buffer.from(`cosignature/v1\ntime ${time}\n${text}`, 'utf8');
    if (!verify(null, message, ed25519PublicFromRaw(pub), sig.subarray(12))) throw new NoteError('witness cosignature does not verify');
    return { time: Number(time) };
  }
  throw new NoteError(`no cosignature by witness ${name}`);
};
