import { describe, expect, it } from 'vitest';
import { decideHold } from './hold-policy.js';

describe('decideHold', () => {
  it('refuses read_only, holds gated modes, and passes autonomous and monitored (with a copy) when no screen objects', () => {
    expect(decideHold({ direction: 'outbound', mode: 'read_only', screenReasons: [] })).toEqual({
      kind: 'refuse',
      code: 'mailbox_read_only',
    });
    expect(decideHold({ direction: 'outbound', mode: 'gated_send', screenReasons: [] })).toEqual({
      kind: 'hold',
      status: 'pending_approval',
      reasons: [{ code: 'oversight_mode', mode: 'gated_send' }],
    });
    expect(decideHold({ direction: 'outbound', mode: 'monitored', screenReasons: [] })).toEqual({ kind: 'pass', copy: true });
    expect(decideHold({ direction: 'outbound', mode: 'autonomous', screenReasons: [] })).toEqual({ kind: 'pass', copy: false });
  });

  it('holds in any sending mode when the PHI or consent screen gives a reason, keeping the mode reason first', () => {
    const phi = [{ code: 'part2' }];
    expect(decideHold({ direction: 'outbound', mode: 'autonomous', screenReasons: phi })).toEqual({
      kind: 'hold',
      status: 'pending_approval',
      reasons: phi,
    });
    expect(decideHold({ direction: 'outbound', mode: 'gated_all', screenReasons: phi })).toMatchObject({
      reasons: [{ code: 'oversight_mode', mode: 'gated_all' }, { code: 'part2' }],
    });
    expect(decideHold({ direction: 'outbound', mode: 'read_only', screenReasons: phi }).kind).toBe('refuse');
  });

  it('lets an approved template flow as monitored only in a gated_send mailbox that allows templates, and keeps its own reasons', () => {
    const tpl = (over: Record<string, unknown> = {}) => ({ approved: true, allowedByMailbox: true, reasons: [], ...over });
    expect(decideHold({ direction: 'outbound', mode: 'gated_send', screenReasons: [], template: tpl() })).toEqual({
      kind: 'pass',
      copy: true,
    });
    expect(
      decideHold({ direction: 'outbound', mode: 'gated_send', screenReasons: [], template: tpl({ allowedByMailbox: false }) }),
    ).toEqual({
      kind: 'hold',
      status: 'pending_approval',
      reasons: [{ code: 'oversight_mode', mode: 'gated_send' }],
    });
    expect(decideHold({ direction: 'outbound', mode: 'gated_all', screenReasons: [], template: tpl() }).kind).toBe('hold');
    expect(decideHold({ direction: 'outbound', mode: 'read_only', screenReasons: [], template: tpl() }).kind).toBe('refuse');
    const slot = { code: 'template_slot_phi', slot: 'note', types: ['mrn'] };
    expect(
      decideHold({ direction: 'outbound', mode: 'gated_send', screenReasons: [{ code: 'phi' }], template: tpl({ reasons: [slot] }) }),
    ).toEqual({
      kind: 'hold',
      status: 'pending_approval',
      reasons: [slot, { code: 'phi' }],
    });
    expect(decideHold({ direction: 'outbound', mode: 'autonomous', screenReasons: [], template: tpl({ reasons: [slot] }) }).kind).toBe(
      'hold',
    );
  });

  it('holds inbound mail for a deactivated agent or a gated_all mailbox, quarantines what DMARC asks to, and flags on opt-in', () => {
    const base = { direction: 'inbound' as const, mode: 'monitored' as const, agentActive: true, authReasons: [], quarantineAsked: false };
    expect(decideHold({ ...base, dmarcFailure: 'quarantine' })).toEqual({ kind: 'pass', copy: false });
    expect(decideHold({ ...base, agentActive: false, dmarcFailure: 'quarantine' })).toMatchObject({
      status: 'pending_approval',
      reasons: [{ code: 'agent_deactivated' }],
    });
    expect(decideHold({ ...base, mode: 'gated_all', dmarcFailure: 'flag' })).toMatchObject({ status: 'pending_approval' });
    const dmarc = [{ code: 'dmarc_fail', policy: 'reject' }];
    expect(decideHold({ ...base, authReasons: dmarc, quarantineAsked: true, dmarcFailure: 'quarantine' })).toEqual({
      kind: 'hold',
      status: 'quarantined',
      reasons: dmarc,
    });
    expect(decideHold({ ...base, authReasons: dmarc, quarantineAsked: true, dmarcFailure: 'flag' })).toEqual({ kind: 'pass', copy: false });
  });
});
