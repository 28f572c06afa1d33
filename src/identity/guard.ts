import type { AuditService } from '../audit/audit-service.js';
import { type AppError, isAppError } from '../kernel/errors.js';
import { type Db, inGroupCommit, type Tx } from '../store/db.js';
import type { AuthCache } from './auth-cache.js';
import { actorOf, type RequestContext } from './principal.js';

export type Target = { type: string; id: string } | null;

/** 401, 403 and 404 are refusals: each is recorded as a `denied` audit event. */
const isDenial = (e: unknown): e is AppError => isAppError(e) && (e.status === 401 || e.status === 403 || e.status === 404);

type Deps = { db: Db; audit: Pick<AuditService, 'record' | 'recordAlone'>; authCache?: Pick<AuthCache, 'bump' | 'invalidate'> };

/**
 * The one path by which services change state or refuse a caller:
 * - `change` runs `fn` in a transaction; `fn` records its own success event
 *   (use `recordIn`) so the change and its audit event commit or fail together;
 *   with `groupCommit`, callers arriving together share one transaction, each
 *   in its own savepoint, and each returns after the shared commit (only for
 *   `fn`s that lock nothing and await only queries on `tx`: see inGroupCommit);
 * - `read` runs `fn` without a transaction;
 * - any refusal (401/403/404) from either is recorded as `denied` with the
 *   caller's delegation chain, then rethrown.
 */
export const createGuard = ({ db, audit, authCache }: Deps) => {
  const denied = async (ctx: RequestContext, action: string, target: Target, e: AppError) => {
    await audit.recordAlone({
      action,
      actor: actorOf(ctx),
      target,
      outcome: 'denied',
      requestId: ctx.requestId,
      clientIp: ctx.clientIp,
      details: { code: e.code, status: e.status },
    });
  };

  const change = async <T>(
    ctx: RequestContext,
    action: string,
    target: Target,
    fn: (tx: Tx) => Promise<T>,
    opts: { invalidatesAuth?: boolean; groupCommit?: boolean } = {},
  ): Promise<T> => {
    try {
      if (!opts.invalidatesAuth || !authCache) {
        return await (opts.groupCommit ? inGroupCommit(db, fn) : db.transaction().execute(fn));
      }
      // A change that can weaken keys: new auth epoch in the same transaction, local cache cleared on commit.
      const out = await db.transaction().execute(async (tx) => {
        const r = await fn(tx);
        await authCache.bump(tx);
        return r;
      });
      authCache.invalidate();
      return out;
    } catch (e) {
      if (isDenial(e)) await denied(ctx, action, target, e);
      throw e;
    }
  };

  const read = async <T>(ctx: RequestContext, action: string, target: Target, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (isDenial(e)) await denied(ctx, action, target, e);
      throw e;
    }
  };

  /** Records a success event for `ctx` inside `tx`. */
  const recordIn = (tx: Tx, ctx: RequestContext, action: string, target: Target, details?: Record<string, unknown>, contentHash?: string) =>
    audit.record(tx, {
      action,
      actor: actorOf(ctx),
      target,
      requestId: ctx.requestId,
      clientIp: ctx.clientIp,
      details,
      contentHash: contentHash ?? null,
    });

  return { change, read, recordIn, denied };
};

export type Guard = ReturnType<typeof createGuard>;
