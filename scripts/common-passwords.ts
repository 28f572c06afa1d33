// Regenerates assets/common-passwords.txt: the ranked common-password dictionary of @zxcvbn-ts/language-common
// (MIT, assets/common-passwords.LICENSE.txt), lowercased, keeping only entries Mailward's length rule would
// otherwise let through (12 characters or more; shorter ones are refused by length alone). Run:
//   node --import tsx scripts/common-passwords.ts > assets/common-passwords.txt
import { dictionary } from '@zxcvbn-ts/language-common';

const MIN = 12;
const seen = new Set<string>();
for (const w of (dictionary as Record<string, string[]>)['passwords-common'] ?? []) {
  const x = w.toLowerCase();
  if ([...x].length >= MIN) seen.add(x);
}
process.stdout.write(`${[...seen].join('\n')}\n`);
