// One successor per rotated refresh token, on every node (issue 9, safe concurrent refresh).
//
// oidc-provider rotates a refresh token R by consuming it and saving a new token with a random
// value. With the grace window (REFRESH_REUSE_GRACE_MS, src/oidc/adapter.ts), concurrent or
// retried refreshes of R each got their own random successor: one grant forked into many
// branches that rotate independently, so a thief who replays R inside the window keeps a branch
// that reuse detection never links to the legitimate client's.
//
// Here the successor's value is derived from R instead: HMAC-SHA256 under a key derived from the
// master key (every node agrees on it, nobody without it can compute a successor, and rows store
// only SHA-256 of values, so a copy of the table does not yield one). Every refresh of R inside
// the window — on any node, at the same moment or as a retry — answers with the same successor S,
// and the adapter's insert-if-absent (src/oidc/adapter.ts) makes S one row whoever writes first.
// The chain stays linear, so presenting any spent link after the window revokes the whole grant
// (RFC 9700 §4.14.2, refresh token rotation). No in-process lock is involved: the database's
// compare-and-set on `consumed_at` and the primary key on the successor row are the arbiters.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHmac } from 'node:crypto';
import type { MasterKey } from '../keys/master-key.ts';

/** The part of oidc-provider's surface this module hooks. */
export interface RotatingProvider {
  use(middleware: (ctx: object, next: () => Promise<void>) => Promise<void>): void;
  RefreshToken: { prototype: { generateTokenId(this: NewRefreshToken): string } };
}

/** The part of a request's Koa context read here (oidc-provider's OIDCContext). */
interface RequestContext {
  oidc?: { entities?: { RotatedRefreshToken?: { jti?: unknown; grantId?: unknown } } };
}

interface NewRefreshToken {
  grantId?: unknown;
}

/**
 * Makes `provider` derive a rotated refresh token's successor from the rotated token's value.
 * oidc-provider sets the `RotatedRefreshToken` entity of the request just before it creates the
 * successor (lib/actions/grants/refresh_token.js); every other refresh token (a code exchange's
 * first one) keeps its random value.
 */
export function deriveRefreshSuccessors(provider: RotatingProvider, master: MasterKey): void {
  // Derived once per provider: the key the successors of this issuer's tokens are made with.
  const key = createHmac('sha256', master.key).update('gatehouse refresh-token succession').digest();
  const requests = new AsyncLocalStorage<object>();
  provider.use((ctx, next) => requests.run(ctx, next));
  const prototype = provider.RefreshToken.prototype;
  const randomValue = prototype.generateTokenId;
  prototype.generateTokenId = function (this: NewRefreshToken) {
    const rotated = (requests.getStore() as RequestContext | undefined)?.oidc?.entities?.RotatedRefreshToken;
    if (rotated && typeof rotated.jti === 'string' && rotated.grantId === this.grantId) {
      return createHmac('sha256', key).update(rotated.jti).digest('base64url');
    }
    return randomValue.call(this);
  };
}
