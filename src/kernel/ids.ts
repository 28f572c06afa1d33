import { uuidv7 } from 'uuidv7';

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

export const newId = (kind: IdKind): string => `${ID_PREFIXES[kind]}_${uuidv7().replaceAll('-', '')}`;

const ID_RE = /^[a-z]{3}_[0-9a-f]{32}$/;
export const isId = (kind: IdKind, value: string): boolean => ID_RE.test(value) && value.startsWith(`${ID_PREFIXES[kind]}_`);
