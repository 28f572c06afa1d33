import { describe, expect, it } from 'vitest';
import { classifySmtpError, parseSmtpReply, scrubDiagnostic } from './bounce-rules.js';

describe('what a delivery attempt records', () => {
  it('keeps the reply code, the enhanced status and the text of an SMTP reply, without addresses', () => {
    expect(parseSmtpReply(550, '550 5.1.1 <maria.lopez@clinic.example>: Recipient address rejected: User unknown')).toEqual({
      code: 550,
      enhanced_status: '5.1.1',
      text: '[address]: Recipient address rejected: User unknown',
    });
    expect(parseSmtpReply(451, '451-4.7.1 Greylisted for "j.doe"@x.example\n451 4.7.1 try again later')).toEqual({
      code: 451,
      enhanced_status: '4.7.1',
      text: 'Greylisted for [address] try again later',
    });
    expect(parseSmtpReply(421, '421 busy')).toEqual({ code: 421, enhanced_status: null, text: 'busy' });
  });

  it('bounds and flattens what it stores', () => {
    expect(scrubDiagnostic(`a\r\nb\u202Ec ${'x'.repeat(500)}`)).toMatch(/^a b c x+$/);
    expect(scrubDiagnostic('x'.repeat(500))).toHaveLength(200);
  });

  it('keeps the network error code and the SMTP stage of a failure without a reply', () => {
    expect(classifySmtpError({ code: 'ECONNREFUSED', command: 'CONN', message: 'connect ECONNREFUSED 127.0.0.1:9' })).toEqual({
      kind: 'defer',
      code: null,
      category: 'connection',
      error: { code: 'ECONNREFUSED', stage: 'CONN', message: 'connect ECONNREFUSED 127.0.0.1:9' },
    });
    expect(classifySmtpError({ code: 'bad code; drop table', message: 'to a@b.example' })).toMatchObject({
      error: { code: 'EUNKNOWN', message: 'to [address]' },
    });
    expect(classifySmtpError({ responseCode: 550, response: '550 5.1.1 <p@clinic.example> unknown' })).toMatchObject({
      kind: 'bounce',
      category: 'recipient',
      smtp_reply: { code: 550, enhanced_status: '5.1.1', text: '[address] unknown' },
    });
  });
});
