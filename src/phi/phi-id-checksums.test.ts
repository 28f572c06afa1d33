import { describe, expect, it } from 'vitest';
import { holdsInMonitored } from './message-eval.js';
import { assessRules } from './phi-context.js';
import {
  checksumIdentifiers,
  validAadhaar,
  validBcPhn,
  validIhi,
  validMedicare,
  validNric,
  validOntarioHealth,
  validRamqStructure,
  validZaId,
} from './phi-id-checksums.js';

// Known-answer vectors. Public documented examples where one exists (python-stdnum's documentation: Aadhaar
// 234123412346, South African ID 7503305044089, BC PHN 9698 658 215; Singapore's S1234567D); the others were built
// by the definition by hand (the check digit worked out from the published weights) and each has a one-digit change
// that must fail.
describe('check digits of national and health numbers (known answers)', () => {
  it('South African ID: date of birth + Luhn', () => {
    expect(validZaId('7503305044089')).toBe(true);
    expect(validZaId('750330 5044 089')).toBe(true);
    expect(validZaId('9002154800087')).toBe(true); // 900215 4800 0 8, Luhn digit 7 by hand
    expect(validZaId('7503305044088')).toBe(false); // check digit changed
    expect(validZaId('7513305044089')).toBe(false); // month 13
  });
  it('Aadhaar: 12 digits, Verhoeff', () => {
    expect(validAadhaar('234123412346')).toBe(true);
    expect(validAadhaar('2341 2341 2346')).toBe(true);
    expect(validAadhaar('234123412347')).toBe(false);
    expect(validAadhaar('23412341234')).toBe(false);
  });
  it('Singapore NRIC/FIN: weights 2,7,6,5,4,3,2, offset 4 for T and G', () => {
    // 1234567 weighs 2+14+18+20+20+18+14 = 106: S 106 % 11 = 7 -> D; T 110 % 11 = 0 -> J; F 7 -> N; G 0 -> X.
    expect(validNric('S1234567D')).toBe(true);
    expect(validNric('T1234567J')).toBe(true);
    expect(validNric('F1234567N')).toBe(true);
    expect(validNric('G1234567X')).toBe(true);
    expect(validNric('s 123 4567 d')).toBe(true);
    expect(validNric('S1234567A')).toBe(false);
    expect(validNric('T1234567D')).toBe(false);
  });
  it('Australian Medicare: weights 1,3,7,9,1,3,7,9 mod 10, issue number, optional IRN', () => {
    // 2123 4567: 2+3+14+27+4+15+42+63 = 170 -> check 0; then the card's issue number, 1.
    expect(validMedicare('2123 45670 1')).toBe(true);
    expect(validMedicare('2123456701')).toBe(true);
    expect(validMedicare('2123 45670 1 2')).toBe(true); // IRN 2
    expect(validMedicare('4951 20380 1')).toBe(true); // 4+27+35+9+2+0+21+72 = 170 -> 0
    expect(validMedicare('2123 45671 1')).toBe(false);
    expect(validMedicare('7123 45670 1')).toBe(false); // first digit 2 to 6 only
  });
  it('Australian IHI: 800360 + Luhn', () => {
    expect(validIhi('8003 6012 3456 7894')).toBe(true); // Luhn digit of 800360123456789 is 4
    expect(validIhi('8003609900000017')).toBe(true);
    expect(validIhi('8003 6012 3456 7895')).toBe(false);
    expect(validIhi('4111111111111111')).toBe(false); // a Luhn-valid card number, not an IHI
  });
  it('BC PHN: mod 11; Ontario health number: Luhn; RAMQ: structure only', () => {
    expect(validBcPhn('9698 658 215')).toBe(true);
    expect(validBcPhn('9698 648 215')).toBe(false);
    expect(validOntarioHealth('5281 406 735')).toBe(true); // Luhn digit of 528140673 is 5
    expect(validOntarioHealth('5281 406 733')).toBe(false);
    expect(validRamqStructure('TREG 6652 1514')).toBe(true); // a woman born 1966-02-15 (month + 50)
    expect(validRamqStructure('TREG 6613 1514')).toBe(false); // month 13
  });
});

describe('unlabelled identifiers found by their check digits', () => {
  const formats = (text: string) => checksumIdentifiers(text).map((c) => c.format);
  it('finds each format in running text, in its usual groupings', () => {
    expect(formats('ID 7503305044089 on file')).toEqual(['za_id']);
    expect(formats('Card 2123 45670 1, expiry 05/29')).toEqual(['au_medicare']);
    expect(formats('please quote 2341 2341 2346 at the desk')).toEqual(['aadhaar']);
    expect(formats('particulars: S1234567D, DOB 03/02/1961')).toEqual(['sg_nric']);
    expect(formats('health number 5281-406-735-KT, version code KT')).toEqual(['ca_on_health']);
    expect(formats('PHN 9698 658 215')).toEqual(['ca_bc_phn']);
    expect(formats('IHI 8003 6012 3456 7894')).toEqual(['au_ihi']);
  });
  it('ignores the same digits with a wrong check digit, after a phone or order label, or as a card number', () => {
    expect(formats('ID 7503305044088 on file')).toEqual([]);
    expect(formats('Call 2123 45670 1 today')).toEqual([]);
    expect(formats('Order no. 2341 2341 2346 shipped')).toEqual([]);
    expect(formats('Card 4111 1111 1111 1111')).toEqual([]);
    expect(formats('Tracking 1Z 4E8 812 03 7730 1924')).toEqual([]);
  });
  it('holds a health-care message carrying one without a label, and passes the same number in a shop receipt', () => {
    const clinic = (n: string) => ({
      subject: 'Your registration',
      text: `Dear Mr Lim, for your registration at Queensway Clinic please confirm your particulars: ${n}. Reply CONFIRM.`,
    });
    for (const n of ['S1234567D', '750330 5044 089', '2341 2341 2346', '2123 45670 1']) {
      expect(holdsInMonitored(assessRules(clinic(n))), n).toBe(true);
    }
    expect(holdsInMonitored(assessRules(clinic('S1234567A')))).toBe(false);
    const shop = {
      subject: 'Your receipt',
      text: 'Thanks for shopping at Bluegum Hardware. Loyalty member 2341 2341 2346, 2 x hinges $8.40.',
    };
    expect(holdsInMonitored(assessRules(shop))).toBe(false);
  });
});

describe('identifier labels of other systems (LABELING.md H2)', () => {
  const holds = (text: string) => holdsInMonitored(assessRules({ subject: 'Your visit', text }));
  it.each([
    'Dear Mrs Mahlangu, your medical aid (KHS/0014969/02) paid R 2 100,00 of the claim at Witbank Medical Suites.',
    'Interim bill for patient Smt. Shobha Jadhav UHID: MH/PN/0044/7731, Sahyagiri City Hospital.',
    'Dear Mrs Begum, your ABHA number 91-8562-7154-1865 is now linked with your records at Care Point Hospital.',
    'Dear Mr Gowda, please verify: Aadhaar: 4821 7730 1965. Bring the original to the hospital registration desk.',
    'Dear Mr Lim, please confirm your particulars at the polyclinic: NRIC s 774 1203 j, DOB 03/02/1961.',
    'Your DVA-funded consultation was claimed under file number QX 20 8813 and paid to the practice.',
    'Plan member: Ravinder Gill. Certificate: 4405 1127 93-01. Claim: physiotherapy, 3 visits.',
    'Sr. Ruiz: Número de cuenta del paciente: 7730-1952. Westfield General Hospital.',
  ])('holds %s', (text) => {
    expect(holds(text)).toBe(true);
  });
  it.each([
    'Bring your ID (NRIC). Call 6555 0125 to change your appointment at Klinik Keluarga Bedok.',
    'Your order ORD-4471-2290-18 has shipped. Tracking 1Z999AA10123456784.',
    'Municipal account: Erf 2217, meter 0048-2913-77, water R 388,10.',
    'Bella (Labrador, patient no. V-22819) is due for her vaccinations at Hillcrest Animal Hospital.',
  ])('passes %s', (text) => {
    expect(holds(text)).toBe(false);
  });
});
