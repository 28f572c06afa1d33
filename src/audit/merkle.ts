import { hash as oneShotHash } from 'node:crypto';

/**
 * RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.
 * Hashes are raw 32-byte Buffers here; the wire uses hex.
 *
 * Leaves of the audit tree are the 32 raw bytes of each event's chain hash,
 * in seq order (leaf index = seq - 1).
 */

export const HASH_SIZE = 32;
const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

export const sha256 = (data: Buffer): Buffer => oneShotHash('sha256', data, 'buffer');

/** RFC 6962 2.1: the root of the empty tree is SHA-256 of the empty string. */
export const EMPTY_ROOT = sha256(Buffer.alloc(0));

// Scratch buffers: one-shot hashing copies its input synchronously, so reuse is safe and saves an allocation per hash.
const leafScratch = Buffer.alloc(1 + HASH_SIZE);
const nodeScratch = Buffer.alloc(1 + 2 * HASH_SIZE, 0x01);

/** RFC 6962 2.1: leaf hash = SHA-256(0x00 || leaf). */
export const leafHash = (leaf: Buffer): Buffer => {
  if (leaf.length !== HASH_SIZE) return sha256(Buffer.concat([LEAF_PREFIX, leaf]));
  leaf.copy(leafScratch, 1);
  return sha256(leafScratch);
};

/** RFC 6962 2.1: leaf hash of a 32-byte value given in hex (the audit leaves). */
export const leafHashHex = (hex: string): Buffer => {
  if (hex.length !== 2 * HASH_SIZE || leafScratch.write(hex, 1, HASH_SIZE, 'hex') !== HASH_SIZE)
    throw new MerkleError('leaf is not a 32-byte hex hash');
  return sha256(leafScratch);
};

/** RFC 6962 2.1: node hash = SHA-256(0x01 || left || right). */
export const nodeHash = (left: Buffer, right: Buffer): Buffer => {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) return sha256(Buffer.concat([NODE_PREFIX, left, right]));
  left.copy(nodeScratch, 1);
  right.copy(nodeScratch, 1 + HASH_SIZE);
  return sha256(nodeScratch);
};

/** A complete, aligned subtree: leaves [index * 2^level, (index + 1) * 2^level). */
export type NodeId = { level: number; index: number };

export const nodeKey = (n: NodeId) => `${n.level}:${n.index}`;

/** Largest power of two strictly smaller than n (n >= 2), RFC 6962 2.1 "k". */
export const splitPoint = (n: number): number => {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
};

const isPow2 = (n: number) => n > 0 && 2 ** Math.round(Math.log2(n)) === n;

/**
 * Splits [lo, hi) into complete aligned subtrees, left to right. Every range an
 * RFC 6962 proof asks for starts at a multiple of a power of two at least as
 * large as its left part, so this gives at most log2(n) nodes.
 */
export const decompose = (lo: number, hi: number): NodeId[] => {
  const out: NodeId[] = [];
  let start = lo;
  while (start < hi) {
    // Largest aligned power-of-two block starting at `start` that fits in [start, hi).
    let size = 1;
    while (start % (size * 2) === 0 && start + size * 2 <= hi) size *= 2;
    const level = Math.log2(size);
    out.push({ level, index: start / size });
    start += size;
  }
  return out;
};

/** MTH of a range from its complete subtrees: fold from the right (RFC 6962 2.1). */
export const foldRange = (nodes: Buffer[]): Buffer => {
  if (nodes.length === 0) return EMPTY_ROOT;
  let acc = nodes[nodes.length - 1]!;
  for (let i = nodes.length - 2; i >= 0; i--) acc = nodeHash(nodes[i]!, acc);
  return acc;
};

export type Range = [number, number];

/** RFC 6962 2.1.1 PATH(m, D[n]): the ranges whose MTH form the audit path, deepest first. */
export const inclusionRanges = (m: number, n: number): Range[] => {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || m >= n) throw new RangeError('leaf index out of range');
  const out: Range[] = [];
  const walk = (lo: number, hi: number) => {
    if (hi - lo <= 1) return;
    const k = splitPoint(hi - lo);
    if (m - lo < k) {
      walk(lo, lo + k);
      out.push([lo + k, hi]);
    } else {
      walk(lo + k, hi);
      out.push([lo, lo + k]);
    }
  };
  walk(0, n);
  return out;
};

/** RFC 6962 2.1.2 PROOF(m, D[n]) via SUBPROOF: ranges whose MTH form the consistency proof. */
export const consistencyRanges = (m: number, n: number): Range[] => {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 1 || m > n) {
    // RFC 9162 2.1.4: a proof from the empty tree is meaningless; we refuse it.
    throw new RangeError('tree sizes out of range');
  }
  if (m === n) return [];
  const out: Range[] = [];
  const sub = (lo: number, hi: number, mm: number, b: boolean) => {
    const size = hi - lo;
    if (mm === size) {
      if (!b) out.push([lo, hi]);
      return;
    }
    const k = splitPoint(size);
    if (mm <= k) {
      sub(lo, lo + k, mm, b);
      out.push([lo + k, hi]);
    } else {
      sub(lo + k, hi, mm - k, false);
      out.push([lo, lo + k]);
    }
  };
  sub(0, n, m, true);
  return out;
};

/** Every complete subtree the given ranges need. */
export const nodesFor = (ranges: Range[]): NodeId[] => {
  const seen = new Map<string, NodeId>();
  for (const [lo, hi] of ranges) for (const node of decompose(lo, hi)) seen.set(nodeKey(node), node);
  return [...seen.values()];
};

export type NodeLookup = (node: NodeId) => Buffer;

export const rangeHash = ([lo, hi]: Range, lookup: NodeLookup): Buffer => foldRange(decompose(lo, hi).map(lookup));

/** Root of a list of leaf hashes (reference implementation, O(n); used for tests and small trees). */
export const rootOfLeaves = (leaves: Buffer[]): Buffer => {
  const c = new CompactRange();
  for (const l of leaves) c.append(l);
  return c.root();
};

/**
 * The right edge of a tree: one complete subtree per set bit of its size.
 * Appending a leaf hash costs amortised one node hash, so a streaming verifier
 * needs O(log n) memory (RFC 9162 2.1.1 recursive definition, unrolled).
 */
export class CompactRange {
  size: number;
  /** Complete subtree hashes, largest (leftmost) first. */
  readonly hashes: Buffer[];

  constructor(size = 0, hashes: Buffer[] = []) {
    if (decompose(0, size).length !== hashes.length) throw new RangeError('compact range does not match its size');
    this.size = size;
    this.hashes = [...hashes];
  }

  /** Appends a leaf hash; `onNode` sees every complete subtree that this completes (level >= 1). */
  append(leaf: Buffer, onNode?: (node: NodeId, hash: Buffer) => void): void {
    let h = leaf;
    let level = 0;
    let index = this.size;
    // Merge while the new subtree has a left sibling of the same size: that is when bit `level` of index is 1.
    while (index % 2 === 1) {
      h = nodeHash(this.hashes.pop()!, h);
      level++;
      index = (index - 1) / 2;
      onNode?.({ level, index }, h);
    }
    this.hashes.push(h);
    this.size++;
  }

  /**
   * Appends a complete subtree of 2^level leaves; the range must end on a
   * multiple of 2^level first (it then is the subtree's aligned left edge).
   */
  appendNode(level: number, node: Buffer): void {
    const width = 2 ** level;
    if (this.size % width !== 0) throw new RangeError('subtree is not aligned with the range');
    let h = node;
    let index = this.size / width;
    while (index % 2 === 1) {
      h = nodeHash(this.hashes.pop()!, h);
      index = (index - 1) / 2;
    }
    this.hashes.push(h);
    this.size += width;
  }

  root(): Buffer {
    return foldRange(this.hashes);
  }

  clone(): CompactRange {
    return new CompactRange(this.size, this.hashes);
  }
}

const checkHash = (h: Buffer, what: string) => {
  if (h.length !== HASH_SIZE) throw new MerkleError(`${what} is not ${HASH_SIZE} bytes`);
};

export class MerkleError extends Error {
  override name = 'MerkleError';
}

/**
 * RFC 9162 2.1.3.2: recomputes the root from a leaf hash and its audit path.
 * Throws MerkleError if the proof is malformed or leads to another root.
 */
export const verifyInclusion = (index: number, size: number, leaf: Buffer, proof: Buffer[], root: Buffer): void => {
  checkHash(leaf, 'leaf hash');
  checkHash(root, 'root hash');
  for (const p of proof) checkHash(p, 'proof hash');
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size)
    throw new MerkleError('leaf index out of range');
  const computed = rootFromInclusion(index, size, leaf, proof);
  if (!computed.equals(root)) throw new MerkleError('inclusion proof does not lead to the root');
};

export const rootFromInclusion = (index: number, size: number, leaf: Buffer, proof: Buffer[]): Buffer => {
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new MerkleError('inclusion proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new MerkleError('inclusion proof is too short');
  return r;
};

/**
 * RFC 9162 2.1.4.2: checks that the tree of size `size2` extends the tree of
 * size `size1`. A proof from size 0 is refused. Throws MerkleError.
 */
export const verifyConsistency = (size1: number, size2: number, root1: Buffer, root2: Buffer, proof: Buffer[]): void => {
  checkHash(root1, 'first root');
  checkHash(root2, 'second root');
  for (const p of proof) checkHash(p, 'proof hash');
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 1 || size1 > size2)
    throw new MerkleError('tree sizes out of range');
  if (size1 === size2) {
    if (proof.length !== 0) throw new MerkleError('proof must be empty for equal sizes');
    if (!root1.equals(root2)) throw new MerkleError('roots differ for equal sizes');
    return;
  }
  if (proof.length === 0) throw new MerkleError('empty consistency proof');
  const path = isPow2(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) throw new MerkleError('consistency proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new MerkleError('consistency proof is too short');
  if (!fr.equals(root1)) throw new MerkleError('consistency proof does not lead to the first root');
  if (!sr.equals(root2)) throw new MerkleError('consistency proof does not lead to the second root');
};
