import { randomFillSync } from 'node:crypto';
import { V7Generator } from 'uuidv7';

/** Prefixed, time-sortable identifiers (STYLE.md: prefix + UUIDv7). */
export const ID_PREFIXES = {
  org: 'org',
  department: 'dep',
  human: 'hum',
  agent: 'agt',
  apiKey: 'key',
  mailbox: 'mbx',
  message: 'msg',
  approval: 'apr',
  secret: 'sec',
  event: 'evt',
  signingKey: 'sgk',
  thread: 'thr',
  request: 'req',
  legalHold: 'lgh',
  auditPurge: 'pur',
  part2Consent: 'pcn',
  session: 'ses',
  invitation: 'inv',
  recoveryCode: 'rcv',
  grant: 'gnt',
  webhook: 'whk',
  webhookSecret: 'whs',
  webhookDelivery: 'whd',
  webhookAttempt: 'wha',
  template: 'tpl',
  breach: 'brc',
  breachIndividual: 'bri',
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

/*
 * The uuidv7 package's generator (monotonic within the process, RFC 9562 layout) fed from a pool of 4 KiB of
 * node:crypto randomness rather than its default 32-byte one, and written as 32 hex digits directly (no
 * dashed form to strip): about half the cost per id (two ids per webhook delivery, bench/webhooks.ts).
 */
const pool = new Uint32Array(1024);
let next = pool.length;
const generator = new V7Generator({
  nextUint32: () => {
    if (next >= pool.length) {
      randomFillSync(pool);
      next = 0;
    }
    return pool[next++]!;
  },
});

export const newId = (kind: IdKind): string => `${ID_PREFIXES[kind]}_${generator.generate().toHex()}`;

const ID_RE = /^[a-z]{3}_[0-9a-f]{32}$/;
export const isId = (kind: IdKind, value: string): boolean => ID_RE.test(value) && value.startsWith(`${ID_PREFIXES[kind]}_`);
