import fs from 'node:fs';
import path from 'node:path';
import { hash, verify } from '@node-rs/argon2';
import { unprocessable } from '../kernel/errors.js';
import { packageRoot } from '../kernel/package-root.js';

/**
 * argon2id with OWASP's minimum parameters (Password Storage Cheat Sheet: m=19 MiB, t=2, p=1).
 * `algorithm: 2` is Argon2id (the package's const enum cannot be imported under isolated modules).
 */
const ARGON2ID = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

/** NIST SP 800-63B 3.1.1.2: at least 8, and 15 without MFA; Mailward asks 12 (a second factor is always required), allows 256. */
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 256;

// Shipped beside the code, one lowercase password a line (from @zxcvbn-ts/language-common, MIT: assets/common-passwords.LICENSE.txt;
// scripts/common-passwords.ts regenerates it).
const LIST_FILE = path.join(packageRoot(), 'assets', 'common-passwords.txt');
let common: Set<string> | undefined;
const commonPasswords = (): Set<string> => {
  common ??= new Set(
    fs
      .readFileSync(LIST_FILE, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean),
  );
  return common;
};

/**
 * NIST SP 800-63B 3.1.1.2: refuse passwords that are too short, found in a list of common or breached
 * passwords, repetitive, or built from the account's own name or email; no composition rules. Throws
 * 422 weak_password with a reason that never repeats the password.
 */
export const checkPasswordPolicy = (password: string, context: { email: string; name: string }) => {
  const length = [...password].length;
  if (length < MIN_PASSWORD_LENGTH) throw unprocessable('weak_password', `Use at least ${MIN_PASSWORD_LENGTH} characters.`);
  if (length > MAX_PASSWORD_LENGTH) throw unprocessable('weak_password', `Use at most ${MAX_PASSWORD_LENGTH} characters.`);
  const lower = password.toLowerCase();
  if (commonPasswords().has(lower)) throw unprocessable('weak_password', 'This password is on a list of common or breached passwords.');
  if (new Set(lower).size <= 2) throw unprocessable('weak_password', 'This password repeats too few characters.');
  const local = context.email.toLowerCase().split('@')[0] ?? '';
  const parts = [local, ...context.name.toLowerCase().split(/\s+/)].filter((p) => p.length >= 4);
  if (parts.some((p) => lower.includes(p)) && length - Math.max(...parts.map((p) => (lower.includes(p) ? p.length : 0))) < 8) {
    throw unprocessable('weak_password', 'This password is mostly your own name or email.');
  }
};

export const hashPassword = (password: string): Promise<string> => hash(password, ARGON2ID);

/** A hash of a random password: verified against when an account does not exist, so timing does not tell. */
let dummy: Promise<string> | undefined;
export const verifyPassword = async (stored: string | null, password: string): Promise<boolean> => {
  if (!stored) {
    dummy ??= hashPassword(`mailward-dummy-${process.pid}-${Date.now()}`);
    await verify(await dummy, password).catch(() => false);
    return false;
  }
  return verify(stored, password).catch(() => false);
};
