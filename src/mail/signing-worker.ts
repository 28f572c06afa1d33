import { parentPort } from 'node:worker_threads';
import { type SignInput, signMessage } from './sign-message.js';

/** Worker-thread side of the signing pool: signs one message per request. */
parentPort?.on('message', async (m: { id: number; input: SignInput }) => {
  try {
    const raw = await signMessage(m.input);
    parentPort?.postMessage({ id: m.id, raw });
  } catch (e) {
    parentPort?.postMessage({ id: m.id, error: (e as { code?: string })?.code ?? 'sign_failed' });
  }
});
