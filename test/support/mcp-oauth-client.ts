import { createHash } from 'node:crypto';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthClientProvider, OAuthTokens } from '@modelcontextprotocol/client';
import type { Browser } from 'playwright-core';
import { expect } from 'vitest';
import type { Clock } from '../../src/kernel/clock.js';
import { signInInBrowser } from './console-browser.js';
import type { TestApp } from './test-app.js';

/** The MCP test clients' redirect URI: nothing listens there; the tests catch the browser's redirect to it. */
export const OAUTH_TEST_REDIRECT = 'http://127.0.0.1:9/callback';

/** RFC 7636 4.2 S256 code challenge of a verifier. */
export const s256 = (verifier: string) => createHash('sha256').update(verifier).digest('base64url');

/**
 * What an MCP client keeps (the SDK asks its provider for each piece); the browser step is the test's. With
 * `clientMetadataUrl` the client names itself by its Client ID Metadata Document instead of registering.
 */
export class MemoryOAuthProvider implements OAuthClientProvider {
  info: OAuthClientInformationMixed | undefined;
  saved: OAuthTokens | undefined;
  verifier = '';
  authUrl: URL | undefined;
  constructor(
    readonly clientMetadata: OAuthClientMetadata,
    readonly clientMetadataUrl?: string,
  ) {}
  get redirectUrl() {
    return OAUTH_TEST_REDIRECT;
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(i: OAuthClientInformationMixed) {
    this.info = i;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(t: OAuthTokens) {
    this.saved = t;
  }
  redirectToAuthorization(u: URL) {
    this.authUrl = u;
  }
  saveCodeVerifier(v: string) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

/**
 * Dr. Ana Rivera, a reviewer, signed in to the console in `browser`, and "Ward Assistant" in Cardiology, the agent
 * she answers for: the person and agent of the OAuth consent tests.
 */
export const signInWithAgent = async (browser: Browser, t: TestApp, origin: string, clock: Clock & { advance: (ms: number) => void }) => {
  const signed = await signInInBrowser(browser, t, origin, clock, {
    name: 'Dr. Ana Rivera',
    email: 'ana.rivera@hospital.example',
    roles: ['reviewer'],
  });
  const dep = await t.call('POST', '/v1/departments', t.adminKey, { name: 'Cardiology' });
  const agent = await t.call('POST', '/v1/agents', t.adminKey, {
    name: 'Ward Assistant',
    department_id: dep.body.id,
    responsible_human_id: signed.human.id,
  });
  expect(agent.status).toBe(201);
  return { ...signed, departmentId: dep.body.id as string, agentId: agent.body.id as string };
};
