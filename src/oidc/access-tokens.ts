// The issuer's own view of its RFC 9068 access tokens: oidc-provider does not store JWT access
// tokens, so it can neither introspect them nor accept them at userinfo (which it reserves for
// audience-less tokens). Gatehouse verifies them here, exactly as the proxy does (signature by
// the account's keys, issuer, audience = client_id, `typ: at+jwt`, exact expiry), plus what the
// proxy checks from its snapshot: the app's revoke_tokens and the user's revocation.
import { CLOCK_TOLERANCE_SECONDS, TokenError, verifyJwt } from '../keys/jwt.ts';
import type { KeyRing } from '../keys/keyring.ts';
import type { StoredUser, UserRepository } from '../store/repositories/users.ts';

export interface AccessTokenPayload {
  iss: string;
  aud: string;
  client_id: string;
  sub: string;
  scope?: string;
  email?: string;
  jti: string;
  iat: number;
  exp: number;
}

export interface AccessTokenChecks {
  keys: KeyRing;
  users: UserRepository;
  accountId: string;
}

/** The token's claims and user when it is live for `clientId` at `issuer`; null otherwise. */
export async function verifyIssuedAccessToken(
  checks: AccessTokenChecks,
  token: string,
  expected: { issuer: string; clientId: string; appTokensRevokedAt: string | null },
  now: number = Date.now(),
): Promise<{ claims: AccessTokenPayload; user: StoredUser } | null> {
  let claims: AccessTokenPayload;
  try {
    const verified = await verifyJwt(checks.keys, token, {
      issuer: expected.issuer,
      audience: expected.clientId,
      type: 'at+jwt',
      requiredClaims: ['sub', 'client_id', 'jti'],
      now: new Date(now),
    });
    claims = verified.payload as unknown as AccessTokenPayload;
  } catch (error) {
    if (error instanceof TokenError) return null;
    throw error;
  }
  const seconds = Math.floor(now / 1000);
  // Issued by this clock: expiry is exact (the tolerance only covers other parties' clocks).
  if (claims.exp <= seconds || claims.iat > seconds + CLOCK_TOLERANCE_SECONDS) return null;
  if (claims.client_id !== expected.clientId) return null;
  const user = await checks.users.get(checks.accountId, claims.sub);
  if (!user || revokedSince(expected.appTokensRevokedAt, user.revokedAt, claims.iat)) return null;
  return { claims, user };
}

/**
 * The app as it is now and the user `sub` names, unless either is gone or (decision 3)
 * `revoke_tokens` on the app or `revoke_user` came after `token` was issued: what an engine's
 * findAccount checks first, for either kind of issuer.
 */
export async function unrevokedAccount<App extends { app: { tokensRevokedAt: string | null } }>(
  deps: { users: UserRepository; accountId: string; currentApp(): App | undefined },
  sub: string,
  token?: { iat?: number },
): Promise<{ current: App; user: StoredUser } | null> {
  const current = deps.currentApp();
  const user = current && (await deps.users.get(deps.accountId, sub));
  if (!current || !user) return null;
  if (token?.iat !== undefined && revokedSince(current.app.tokensRevokedAt, user.revokedAt, token.iat)) {
    return null;
  }
  return { current, user };
}

/** `Authorization: Bearer <token>` (RFC 6750 §2.1), or null. */
export function bearerToken(header: string | undefined): string | null {
  const match = header ? /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i.exec(header) : null;
  return match ? match[1]! : null;
}

/** Decision 3: revoke_tokens on the app, or the user's revocation, after `iat` (Unix seconds). */
function revokedSince(appRevokedAt: string | null, userRevokedAt: string | null, iat: number): boolean {
  const issuedMs = iat * 1000;
  return (
    (appRevokedAt !== null && Date.parse(appRevokedAt) > issuedMs) ||
    (userRevokedAt !== null && Date.parse(userRevokedAt) > issuedMs)
  );
}
