import fs from 'node:fs';

/**
 * Files that hold PHI, keys or secrets are the owner's alone (45 CFR
 * 164.312(a)(1) access control; 164.312(c)(1) integrity): directories 0700,
 * files 0600, whatever the process umask. Helpers return true when they had
 * to tighten something that already existed, so the caller can say so.
 */

const isLoose = (mode: number) => (mode & 0o077) !== 0;

/** Creates `dir` (and missing parents) with mode 0700, or tightens an existing one to 0700. */
export const ensurePrivateDir = (dir: string): boolean => {
  const existed = fs.existsSync(dir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!isLoose(fs.statSync(dir).mode)) return false;
  fs.chmodSync(dir, 0o700);
  return existed;
};

/** Creates `file` empty with mode 0600 if it is missing, or tightens an existing one to 0600. */
export const ensurePrivateFile = (file: string): boolean => {
  try {
    fs.closeSync(fs.openSync(file, 'wx', 0o600));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  return tightenFile(file);
};

/** Tightens `file` to 0600 if it exists and is readable by others; a missing file is left missing. */
export const tightenFile = (file: string): boolean => {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  if (!isLoose(st.mode)) return false;
  fs.chmodSync(file, 0o600);
  return true;
};
