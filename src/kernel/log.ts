import { type DestinationStream, destination as pinoDestination, type Logger, pino, stdTimeFunctions } from 'pino';

/**
 * No PHI, bodies, addresses or secrets in logs (45 CFR 164.312(b) logs must not
 * themselves become a disclosure). Anything under these paths is replaced.
 */
export const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  '*.password',
  '*.secret',
  '*.value',
  '*.key',
  '*.api_key',
  '*.text',
  '*.html',
  '*.body',
  '*.subject',
  '*.email',
  '*.to',
  '*.cc',
  '*.bcc',
  '*.from',
  '*.address',
  '*.otpauth_uri',
];

export type LogOptions = { level?: string; destination?: DestinationStream | number };

export const createLogger = ({ level = 'info', destination = 1 }: LogOptions = {}): Logger =>
  pino(
    {
      level,
      base: { service: 'mailward' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: stdTimeFunctions.isoTime,
    },
    typeof destination === 'number' ? pinoDestination({ fd: destination, sync: false }) : destination,
  );

export type { Logger };
