import type { OversightMode } from '../store/schema.js';

/** CONTRACT.md "Oversight modes", from least to most human oversight. */
export const OVERSIGHT_MODES = [
  'autonomous',
  'monitored',
  'gated_send',
  'gated_all',
  'read_only',
] as const satisfies readonly OversightMode[];

export const DEFAULT_OVERSIGHT_MODE: OversightMode = 'gated_send';

const rank = (m: OversightMode) => OVERSIGHT_MODES.indexOf(m);

/** True when `to` gives humans less oversight than `from` (needs an admin human, audited as such). */
export const isLoosening = (from: OversightMode, to: OversightMode) => rank(to) < rank(from);

/** A machine-readable reason a message is held; later issues add PHI and consent codes. */
export type HoldReason = { code: string; [k: string]: unknown };

/** What the mode says an outbound message needs: refusal, a human, or nothing. */
export const outboundDecision = (
  mode: OversightMode,
): { kind: 'refuse' } | { kind: 'hold'; reasons: HoldReason[] } | { kind: 'send'; copy: boolean } => {
  switch (mode) {
    case 'read_only':
      return { kind: 'refuse' };
    case 'gated_send':
    case 'gated_all':
      return { kind: 'hold', reasons: [{ code: 'oversight_mode', mode }] };
    case 'monitored':
      return { kind: 'send', copy: true };
    case 'autonomous':
      return { kind: 'send', copy: false };
  }
};
