import fs from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { expect } from 'vitest';
import type { Clock } from '../../src/kernel/clock.js';
import { oathtoolCode } from './console-client.js';
import { launchChromium, listenLocal } from './browser.js';
import type { Dialect } from '../../src/store/db.js';
import { tempDir } from './dialects.js';
import { relayEnv, type Sink, startSink } from './outbound-sink.js';
import { createTestApp, type TestApp } from './test-app.js';

const PASSWORD = 'lantern orchard copper meadow';

/**
 * A human invited through the API who sets a password and enrols TOTP in Chromium, as a new reviewer
 * does; returns the signed-in page. `clock` must be a fixed clock the caller advances (codes are single-use).
 */
export const signInInBrowser = async (
  browser: Browser,
  t: TestApp,
  origin: string,
  clock: Clock & { advance: (ms: number) => void },
  o: { name: string; email: string; roles: string[]; adminKey?: string },
) => {
  const human = await t.call('POST', '/v1/humans', o.adminKey ?? t.adminKey, { name: o.name, email: o.email, roles: o.roles });
  expect(human.status).toBe(201);
  const inv = await t.call('POST', `/v1/humans/${human.body.id}/invitations`, o.adminKey ?? t.adminKey, undefined, {
    host: new URL(origin).host,
  });
  expect(inv.status).toBe(201);
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(inv.body.url);
  await page.fill('#password', PASSWORD);
  await page.fill('#password_confirm', PASSWORD);
  await page.click('#set-password');
  await page.waitForURL(`${origin}/console/enrol`);
  const secret = (await page.textContent('#totp-secret'))!.trim();
  await page.fill('#code', oathtoolCode(secret, clock.now()));
  await page.click('#confirm-totp');
  await page.click('#continue');
  await page.waitForURL(`${origin}/console`);
  /** A fresh second-factor check (21 CFR 11.200) on the step-up page, then back to `returnTo`. */
  const stepUp = async (returnTo: string) => {
    clock.advance(31_000);
    await page.goto(`${origin}/console/step-up?return_to=${encodeURIComponent(returnTo)}`);
    await page.fill('#code', oathtoolCode(secret, clock.now()));
    await page.click('#step-up');
    await page.waitForURL(`${origin}${returnTo}`);
  };
  return { page: page as Page, context, human: human.body as { id: string }, secret, stepUp };
};

/** axe-core in the page (injected from node_modules, as the page serves no such script): serious and critical violations. */
export const axeViolations = async (page: Page) => {
  // Evaluated through the devtools protocol: the console's CSP (script-src 'self') would refuse an injected tag.
  await page.evaluate(fs.readFileSync(path.join(process.cwd(), 'node_modules', 'axe-core', 'axe.min.js'), 'utf8'));
  const r = (await page.evaluate('axe.run(document, { resultTypes: ["violations"] })')) as {
    violations: { id: string; impact: string; nodes: { target: string[] }[] }[];
  };
  return r.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
};

/**
 * The console's test set-up: a test app listening on http://localhost:<port>, Debian's Chromium, and with
 * `sinkDir` a loopback STARTTLS relay the app delivers through. `closeConsoleApp` stops them in reverse.
 */
export const openConsoleApp = async (dialect: Dialect, opts: { clock?: Clock; sinkDir?: string } = {}) => {
  const sink = opts.sinkDir ? await startSink(tempDir(opts.sinkDir)) : undefined;
  const t = await createTestApp(dialect, { ...(opts.clock ? { clock: opts.clock } : {}), ...(sink ? { env: relayEnv(sink) } : {}) });
  const { origin } = await listenLocal(t);
  const browser = await launchChromium();
  return { t, sink, origin, browser };
};

export const closeConsoleApp = async (h: { t?: TestApp; browser?: Browser; sink?: Sink }) => {
  await h.browser?.close();
  h.t?.app.server.closeAllConnections();
  await h.t?.close();
  await h.sink?.close();
};
