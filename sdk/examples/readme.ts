// The SDK example of README.md (section SDK), kept here so `npm run typecheck` compiles it; test/sdk.test.ts checks the two match.
import { createMailwardClient, isMailwardError } from '../src/index.js';

const mw = createMailwardClient({ baseUrl: 'http://127.0.0.1:8025', apiKey: process.env.MAILWARD_API_KEY! });
const { id } = await mw.sendEmail(
  'mbx_...',
  { to: ['patient@example.org'], subject: 'Your refill is ready', text: 'At the pharmacy desk.' },
  { idempotencyKey: 'refill-reminder-1' }, // optional: retries with this key return the first message
);
for await (const m of mw.messages('mbx_...', { direction: 'inbound', unread: 'true' })) console.log(m.id, m.status);
try {
  await mw.getEmail(id);
} catch (e) {
  if (isMailwardError(e) && e.code === 'not_found') console.error('gone', e.requestId);
}
