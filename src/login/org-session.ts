// The organisation session (spec §4.2: `CF_Authorization` with `type: org` on the team domain)
// as other team-domain modules see it: the per-SaaS-app OIDC provider and managed OAuth ask
// "who is this browser?" and, when nobody, send it to the login with a way back.
import type { Gateway } from '../gateway.ts';
import { type LoginSession, LoginState } from '../identity/state.ts';
import type { LoginIdentity } from '../identity/types.ts';
import { TokenError, verifyJwt } from '../keys/jwt.ts';
import { ORG_COOKIE, readCookies } from './cookies.ts';
import { isSafePath } from './redirects.ts';

export interface OrgSession {
  sessionId: string;
  /** The user's uid: the `sub` of every token minted for this person (spec §4.3). */
  userId: string;
  email: string;
  identity: LoginIdentity;
  identityNonce: string;
  expiresAt: Date;
}

export interface OrgSessions {
  /** The organisation session behind this team-domain request's CF_Authorization cookie, or null (expired, revoked, absent, bad). */
  current(headers: { cookie?: string | undefined }): Promise<OrgSession | null>;
  /**
   * Team-domain URL of the login page that, after a successful login, redirects the browser to
   * `returnTo` — a path on the team domain only. Throws a TypeError for anything else (an
   * absolute URL, `//host`, backslashes, control characters): callers pass their own paths.
   */
  loginUrl(returnTo: string): string;
}

/** The query parameter of `/cdn-cgi/access/login` that names the team-domain path to return to. */
export const TEAM_RETURN_PARAM = 'redirect_url';

/**
 * The live session behind a team-domain Cookie header: the org token verifies (our key, our
 * issuer, `type: org`), its session row exists, is unexpired and not ended, and the user has
 * not been revoked since it began (`revoke_user` and logout, decision 3).
 */
export async function liveSession(
  gateway: Gateway,
  state: LoginState,
  cookieHeader: string | string[] | undefined,
  now: Date = new Date(),
): Promise<LoginSession | null> {
  const token = readCookies(cookieHeader).get(ORG_COOKIE);
  if (!token) return null;
  const accountId = gateway.account.accountId;
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await verifyJwt(gateway.keys, token, {
      issuer: gateway.settings.teamDomain,
      audience: accountId,
      requiredClaims: ['sub', 'jti'],
      now,
    }));
  } catch (error) {
    if (error instanceof TokenError) return null;
    throw error;
  }
  if (payload.type !== 'org' || typeof payload.jti !== 'string') return null;
  const session = await state.getSession(payload.jti);
  if (!session || session.userId !== payload.sub || session.revokedAt) return null;
  if (session.expiresAt <= now.toISOString()) return null;
  const user = await gateway.repos.users.get(accountId, session.userId);
  if (!user || (user.revokedAt && session.createdAt <= user.revokedAt)) return null;
  return session;
}

/** `state` defaults to the store's login tables; the login passes its own to share it. */
export function orgSessions(
  gateway: Gateway,
  state: LoginState = new LoginState(gateway.store, gateway.account.accountId),
): OrgSessions {
  return {
    async current(headers) {
      const session = await liveSession(gateway, state, headers.cookie);
      if (!session) return null;
      return {
        sessionId: session.id,
        userId: session.userId,
        email: session.identity.email,
        identity: session.identity,
        identityNonce: session.identityNonce,
        expiresAt: new Date(session.expiresAt),
      };
    },
    loginUrl(returnTo) {
      if (!isSafePath(returnTo)) throw new TypeError('returnTo must be a path on the team domain');
      const url = new URL('/cdn-cgi/access/login', gateway.settings.teamDomain);
      url.searchParams.set(TEAM_RETURN_PARAM, returnTo);
      return url.href;
    },
  };
}
