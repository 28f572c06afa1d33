import { z } from 'zod';

/**
 * An integer in a query string or path: plain decimal digits only. Number()
 * (z.coerce) would also take `1e3`, `0x10`, ` 5`, `+5` and `5.0`, so one value
 * would have many spellings and a typo would pass as a number.
 */
export const intQuery = (min: number, max: number) =>
  z
    .string()
    .regex(/^[0-9]{1,16}$/, 'must be a decimal integer (digits only)')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
