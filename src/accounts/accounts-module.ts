import type { AuditService } from '../audit/audit-service.js';
import type { Guard } from '../identity/guard.js';
import type { IdentityRepo } from '../identity/identity-repo.js';
import type { Clock } from '../kernel/clock.js';
import type { KeyRing } from '../kernel/crypto/keyring.js';
import type { Db } from '../store/db.js';
import { createAccountsRepo } from './accounts-repo.js';
import { type AccountsConfig, createAccountsService } from './accounts-service.js';
import { createSsoService } from './sso-service.js';
import { createWebauthnService } from './webauthn-service.js';

type Deps = {
  db: Db;
  identity: IdentityRepo;
  guard: Guard;
  audit: Pick<AuditService, 'record' | 'recordAlone'>;
  ring: KeyRing;
  clock: Clock;
  config: AccountsConfig;
};

/** Human sign-in: passwords and TOTP, passkeys, single sign-on, server-side sessions. */
export const createAccountsModule = (deps: Deps) => {
  const repo = createAccountsRepo();
  const accounts = createAccountsService({ ...deps, repo });
  const webauthn = createWebauthnService({ db: deps.db, repo, identity: deps.identity, accounts, clock: deps.clock });
  const sso = createSsoService({
    db: deps.db,
    repo,
    identity: deps.identity,
    accounts,
    guard: deps.guard,
    ring: deps.ring,
    clock: deps.clock,
  });
  return { repo, accounts, webauthn, sso, config: deps.config };
};

export type AccountsModule = ReturnType<typeof createAccountsModule>;
