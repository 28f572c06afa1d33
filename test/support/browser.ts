import type { AddressInfo } from 'node:net';
import { type Browser, chromium } from 'playwright-core';
import type { TestApp } from './test-app.js';

/** Debian's Chromium, headless (PITFALLS.md: `npx playwright install` cannot download anything here). */
export const launchChromium = (): Promise<Browser> =>
  chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      // WebAuthn refuses IP addresses as relying party ids: the console is reached as http://localhost, a secure context.
      '--host-resolver-rules=MAP localhost 127.0.0.1',
    ],
  });

/** Listens on a loopback port; the console's origin is then http://localhost:<port>. */
export const listenLocal = async (t: TestApp) => {
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (t.app.server.address() as AddressInfo).port;
  return { port, origin: `http://localhost:${port}` };
};
