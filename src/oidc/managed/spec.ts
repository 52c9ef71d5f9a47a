// Managed OAuth's issuer for one self-hosted app at one of its hosts (spec §2.5), as a
// ProviderSpec for the shared engine (src/oidc/engine.ts):
// - issuer `<app origin>/cdn-cgi/access/oauth`; clients only by registration (RFC 7591) or by
//   client ID metadata document, always public with PKCE S256;
// - the one resource is the app itself (RFC 8707): a `resource` on any of the app's hostnames
//   (same scheme and port as the issuer) is bound to the app's AUD, anything else is
//   `invalid_target`; access tokens are RFC 9068 JWTs with `aud` = the app's AUD tag, so the
//   proxy verifies them offline and only for this app (decision 6);
// - lifetimes from `oauth_configuration.grant` (access_token_lifetime, session_duration), else the
//   app's session duration for the grant;
// - refresh tokens for every client (MCP clients do not ask for offline_access), rotated by the
//   engine; a refresh re-runs the app's policies (spec §2.5 "refreshing re-runs the policies").

import { appServesHost } from '../../login/redirects.ts';
import { evaluate, parseGoDuration } from '../../policy/index.ts';
import type { Decision } from '../../policy/types.ts';
import type { SnapshotApp } from '../../snapshot/snapshot.ts';
import type { OAuthConfiguration, SelfHostedApp } from '../../store/repositories/apps.ts';
import type { UserRepository } from '../../store/repositories/users.ts';
import { revokedSince } from '../access-tokens.ts';
import type { OidcStorage } from '../adapter.ts';
import type { OidcAccount, OidcContext, OidcToken, ProviderSpec } from '../engine.ts';
import { type RememberedLogin, rememberedLogin, unitDurationSeconds } from '../saas.ts';
import { issuerFor } from './metadata.ts';

export type ManagedEntry = SnapshotApp & {
  app: SelfHostedApp & { config: { oauth_configuration: OAuthConfiguration } };
};

/** When `access_token_lifetime` is not set: short, as MCP clients refresh on 401 by themselves. */
const DEFAULT_ACCESS_TOKEN_SECONDS = 15 * 60;
const DEFAULT_GRANT_SECONDS = 86_400;
/**
 * The scope of an access token for the app: the app is one resource, all or nothing, and
 * Cloudflare's `oauth_configuration` has no scopes to configure. oidc-provider needs a granted
 * scope to issue a resource's token, so there is exactly one.
 */
export const RESOURCE_SCOPE = 'access';

export interface ManagedDeps {
  accountId: string;
  users: UserRepository;
  storage: OidcStorage;
  /** The app as the live snapshot has it now (policies and revocations change without a rebuild). */
  currentApp(): ManagedEntry | undefined;
}

/** Whether a snapshot entry is a self-hosted app with managed OAuth turned on. */
export function isManaged(entry: SnapshotApp | undefined): entry is ManagedEntry {
  return entry?.app.type === 'self_hosted' && entry.app.config.oauth_configuration?.enabled === true;
}

/**
 * Whether `resource` names this app (RFC 8707 §2): an absolute URL without fragment on one of its
 * hostnames, with the scheme and port the issuer is reached by (the one listener serves them all).
 */
export function resourceBelongsTo(app: SelfHostedApp, origin: string, resource: string): boolean {
  if (resource.length > 2048 || resource.includes('#') || !URL.canParse(resource)) return false;
  const url = new URL(resource);
  const base = new URL(origin);
  return (
    url.protocol === base.protocol &&
    url.port === base.port &&
    url.username === '' &&
    url.password === '' &&
    appServesHost(app, url.hostname)
  );
}

/** The decision for a user now, with the identity of their login (as the login decided it). */
export function decideFor(
  entry: SnapshotApp,
  userId: string,
  email: string,
  login: RememberedLogin | null,
): Decision {
  if (!entry.compiled) return { decision: 'deny', policy: null, trace: null };
  return evaluate(entry.compiled, {
    now: Date.now(),
    identity: { ...login?.identity, email, userUid: userId },
    ...(login?.ip && { clientIp: login.ip }),
  });
}

/** How long a grant (its refresh tokens) lasts: `grant.session_duration`, else the app's session. */
export function grantSeconds(app: ManagedEntry['app']): number {
  const ms = parseGoDuration(
    app.config.oauth_configuration.grant.session_duration ?? app.config.session_duration,
  );
  return ms ? Math.floor(ms / 1000) : DEFAULT_GRANT_SECONDS;
}

export function managedProviderSpec(entry: ManagedEntry, origin: string, deps: ManagedDeps): ProviderSpec {
  const { app } = entry;
  const oauth = app.config.oauth_configuration;
  const issuer = issuerFor(origin);
  const accessTokenSeconds = oauth.grant.access_token_lifetime
    ? unitDurationSeconds(oauth.grant.access_token_lifetime)
    : DEFAULT_ACCESS_TOKEN_SECONDS;

  async function findAccount(
    _ctx: OidcContext,
    sub: string,
    token?: OidcToken,
  ): Promise<(OidcAccount & { email: string }) | undefined> {
    const current = deps.currentApp();
    if (!current) return undefined;
    const user = await deps.users.get(deps.accountId, sub);
    if (!user) return undefined;
    // Decision 3: revoke_tokens on the app and revoke_user end what was issued before them.
    if (token?.iat !== undefined && revokedSince(current.app.tokensRevokedAt, user.revokedAt, token.iat)) {
      return undefined;
    }
    if (token?.kind === 'RefreshToken') {
      const login = await rememberedLogin(deps.storage, app.id, sub);
      if (decideFor(current, user.id, user.email, login).decision !== 'allow') return undefined;
    }
    return { accountId: sub, email: user.email, claims: () => ({ sub, email: user.email }) };
  }

  return {
    kind: 'managed_oauth',
    namespace: app.id,
    issuer,
    clients: [],
    scopes: ['openid', 'offline_access'],
    claims: { openid: ['sub'], email: ['email'] },
    ttl: { accessToken: accessTokenSeconds, idToken: accessTokenSeconds, refreshToken: grantSeconds(app) },
    defaultResource: origin,
    resourceServer: (resource) => {
      const current = deps.currentApp();
      return current && resourceBelongsTo(current.app, origin, resource)
        ? { audience: current.app.aud, scope: RESOURCE_SCOPE }
        : null;
    },
    pkceRequired: () => true,
    issueRefreshToken: () => true,
    findAccount,
    // Access tokens are the proxy's to check; introspection has nothing to add for them.
    introspectAccessToken: async () => null,
    async accessTokenClaims(ctx, token) {
      const current = deps.currentApp();
      const account = ctx.oidc.account as (OidcAccount & { email?: string }) | undefined;
      if (!current || !account?.email || !token.accountId) return undefined;
      // The policy that admits the user now goes into the token, so the proxy re-checks it per
      // request like a session's (src/policy/session.ts).
      const login = await rememberedLogin(deps.storage, app.id, token.accountId);
      const decision = decideFor(current, token.accountId, account.email, login);
      return {
        email: account.email,
        ...(decision.policy && {
          policy_id: decision.policy.id,
          policy_precedence: decision.policy.precedence,
        }),
      };
    },
    features: {
      registration: { enabled: oauth.dynamic_client_registration.enabled, initialAccessToken: false },
      // RFC 7592: `registration_client_uri` and a registration access token are returned.
      registrationManagement: {
        enabled: oauth.dynamic_client_registration.enabled,
        rotateRegistrationAccessToken: true,
      },
    },
  };
}
