import type { OversightMode } from '../store/schema.js';
import { type HoldReason, outboundDecision } from './oversight-modes.js';

/**
 * Whether a message waits for a human, as one pure function with the reasons as data (CONTRACT.md "Oversight
 * modes"; 45 CFR 164.308(a)(1)(ii)(B): safeguards set per risk). Send and receive call it under the mailbox as
 * it is inside their transaction; the screens upstream (PHI policy, consent, message authentication) hand in
 * their own reasons, already computed, so this function decides and never looks anything up.
 */
export type HoldInput =
  | {
      direction: 'outbound';
      mode: OversightMode;
      /** Reasons the PHI policy and consent screen give (phi, part2, phi_in_subject, consent_unknown, ...). */
      screenReasons: readonly HoldReason[];
      /**
       * A send rendered from a template (README "Templates and bulk sends"): `approved` (an approved version was
       * rendered), `allowedByMailbox` (the mailbox's allow_templates) and the template's own reasons (slot values
       * or the rendered message carrying PHI the version does not allow).
       */
      template?: { approved: boolean; allowedByMailbox: boolean; reasons: readonly HoldReason[] };
    }
  | {
      direction: 'inbound';
      mode: OversightMode;
      /** The mailbox's agent was deactivated after RCPT: held for a reviewer, never lost, never shown. */
      agentActive: boolean;
      /** Authentication reasons (dmarc_fail, org_domain_unauthenticated) with their facts. */
      authReasons: readonly HoldReason[];
      /** The sender's DMARC policy asked receivers to quarantine or reject, or the mail spoofs the organisation. */
      quarantineAsked: boolean;
      /** The mailbox's choice for such mail: `quarantine` (default) or `flag` (an admin's opt-in). */
      dmarcFailure: 'quarantine' | 'flag';
    };

export type HoldDecision =
  /** read_only: nothing may be sent. */
  | { kind: 'refuse'; code: 'mailbox_read_only' }
  /** Waits for a reviewer: `pending_approval`, or (inbound) `quarantined` until released. */
  | { kind: 'hold'; status: 'pending_approval' | 'quarantined'; reasons: HoldReason[] }
  /** Goes on: outbound to the queue (`copy`: monitored mode copies it for review), inbound to the agent. */
  | { kind: 'pass'; copy: boolean };

export const decideHold = (i: HoldInput): HoldDecision => {
  if (i.direction === 'outbound') {
    const mode = outboundDecision(i.mode);
    if (mode.kind === 'refuse') return { kind: 'refuse', code: 'mailbox_read_only' };
    // An approved template's send flows as monitored would in a gated_send mailbox that allows templates: the
    // reviewer approved its shape once; gated_all keeps holding everything.
    const viaTemplate = i.template?.approved === true && i.template.allowedByMailbox && i.mode === 'gated_send';
    const reasons = [...(mode.kind === 'hold' && !viaTemplate ? mode.reasons : []), ...(i.template?.reasons ?? []), ...i.screenReasons];
    if (reasons.length > 0) return { kind: 'hold', status: 'pending_approval', reasons };
    return { kind: 'pass', copy: viaTemplate || (mode.kind === 'send' && mode.copy) };
  }
  if (!i.agentActive) return { kind: 'hold', status: 'pending_approval', reasons: [{ code: 'agent_deactivated' }, ...i.authReasons] };
  // CONTRACT.md: gated_all holds every inbound message until a reviewer releases it.
  if (i.mode === 'gated_all')
    return { kind: 'hold', status: 'pending_approval', reasons: [{ code: 'oversight_mode', mode: 'gated_all' }, ...i.authReasons] };
  // RFC 7489 6.3: `quarantine` keeps such mail listed for a reviewer, never dropped; `flag` delivers it with the flags.
  if (i.dmarcFailure === 'quarantine' && i.quarantineAsked) return { kind: 'hold', status: 'quarantined', reasons: [...i.authReasons] };
  return { kind: 'pass', copy: false };
};
