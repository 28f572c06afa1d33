/**
 * National Provider Identifier check digit (45 CFR 162.406; CMS "NPI check digit" guidance): the Luhn formula
 * (ISO/IEC 7812) over the prefix 80840 followed by the first nine digits; the tenth digit is the check digit.
 * A dozen lines, so written here rather than pulled in as a dependency.
 */
export const isValidNpi = (npi: string): boolean => {
  if (!/^\d{10}$/.test(npi)) return false;
  const digits = `80840${npi.slice(0, 9)}`;
  let sum = 0;
  // Luhn: from the rightmost payload digit, double every second digit (that digit is doubled first: the check digit is appended after it).
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10 === Number(npi[9]);
};
