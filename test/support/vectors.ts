import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The vendored test vectors (test/vectors, each source's licence beside its files; see test/vectors/README.md). */
export const VECTORS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'vectors');

/**
 * Reads a vendored vector file. A missing file throws, so the test that needs
 * it fails: a known-answer test is never skipped because its data went away.
 */
export const vectorPath = (rel: string): string => {
  const p = path.join(VECTORS_DIR, rel);
  if (!fs.existsSync(p)) throw new Error(`test vector missing: test/vectors/${rel} (restore it from git; vectors are never optional)`);
  return p;
};
export const readVector = (rel: string): Buffer => fs.readFileSync(vectorPath(rel));
export const readVectorJson = <T>(rel: string): T => JSON.parse(readVector(rel).toString('utf8')) as T;

/**
 * Every vendored file with its SHA-256, from test/vectors/MANIFEST.sha256
 * (`sha256sum` format). Tests take their file lists from here, not from the
 * directory, so a deleted or edited vector fails instead of shrinking the set.
 */
export const manifest = (): { file: string; sha256: string }[] =>
  readVector('MANIFEST.sha256')
    .toString('utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
      if (!m) throw new Error(`bad line in test/vectors/MANIFEST.sha256: ${line}`);
      return { sha256: m[1] as string, file: m[2] as string };
    });

/** The manifest's JSON files under `prefix`, parsed; throws on any missing file. */
export const vectorJsonFilesUnder = <T>(prefix: string): [string, T][] =>
  manifest()
    .filter((e) => e.file.startsWith(prefix) && e.file.endsWith('.json'))
    .map((e) => [e.file, readVectorJson<T>(e.file)]);
