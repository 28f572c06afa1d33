import { serveWorkerRequests } from '../kernel/worker-pool.js';
import { type SignInput, signMessage } from './sign-message.js';

/** Worker-thread side of the signing pool: signs one message per request. */
serveWorkerRequests<SignInput>(signMessage);
