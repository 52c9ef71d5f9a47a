// Access for SaaS: one issuer per OIDC SaaS app at `<team domain>/cdn-cgi/access/sso/oidc/
// <client_id>` (spec §2.2), with the app's `saas_app` mapped field by field onto the engine:
// - client_id / client_secret (stored as SHA-256) → the one static client, client_secret_basic
//   or client_secret_post; `allow_pkce_without_client_secret` makes it a public client
//   (`token_endpoint_auth_method: none`) that must use PKCE;
// - redirect_uris → exact-match redirect URIs; grant_types → `authorization_code` (PKCE required
//   when only `authorization_code_with_pkce` is listed) and `refresh_token` (`refresh_tokens`);
// - scopes (+ offline_access with refresh tokens), custom_claims, group_filter_regex → claims;
// - access_token_lifetime, refresh_token_options.lifetime → token lifetimes.
// Access tokens are RFC 9068 JWTs with `aud` = `client_id` (decision 2), so the proxy accepts
// them for linked_app_token policies offline.
import type { LoginIdentity } from '../identity/types.ts';
import type { KeyRing } from '../keys/keyring.ts';
import type { RequestContext } from '../policy/types.ts';
import type { IdentityDecider } from '../policy-external/identity-decision.ts';
import type { SnapshotApp } from '../snapshot/snapshot.ts';
import type { SaasApp } from '../store/repositories/apps.ts';
import type { UserRepository } from '../store/repositories/users.ts';
import { unrevokedAccount, verifyIssuedAccessToken } from './access-tokens.ts';
import type { OidcStorage } from './adapter.ts';
import { claimsByScope, userClaims } from './claims.ts';
import type { OidcAccount, OidcClientMetadata, ProviderSpec } from './engine.ts';

export type SaasEntry = SnapshotApp & { app: SaasApp };

/** Storage model under which the identity of a user's last login at the app is kept. */
const IDENTITY_MODEL = 'GatehouseIdentity';

export interface SaasDeps {
  teamDomain: string;
  accountId: string;
  users: UserRepository;
  keys: KeyRing;
  storage: OidcStorage;
  /** The app as the live snapshot has it now (policies and revocations change without a rebuild). */
  currentApp(): SaasEntry | undefined;
  /** Identity-time decisions, external evaluation included (src/policy-external/identity-decision.ts). */
  decide: IdentityDecider;
}

/** The login a grant was made from: identity and address, for claims and re-evaluation. */
export interface RememberedLogin {
  identity: LoginIdentity;
  ip: string | null;
  /** The login connection's verified client certificate (src/tls/client-certificate.ts). */
  mtls?: RequestContext['mtls'];
  /** The login request's country from the configured source (src/geo/country.ts). */
  country?: string;
}

export function saasIssuer(teamDomain: string, clientId: string): string {
  return `${teamDomain}/cdn-cgi/access/sso/oidc/${clientId}`;
}

/** `5m`, `24h`, `90d` (validated by the API) in seconds. */
export function unitDurationSeconds(text: string): number {
  const match = /^(\d+)([mhd])$/.exec(text);
  if (!match) throw new Error(`not a duration: ${text}`);
  return Number(match[1]) * { m: 60, h: 3600, d: 86_400 }[match[2] as 'm' | 'h' | 'd'];
}

export function isPublicClient(app: SaasApp): boolean {
  return app.config.saas_app.allow_pkce_without_client_secret;
}

export function saasProviderSpec(entry: SaasEntry, deps: SaasDeps): ProviderSpec {
  const { app } = entry;
  const saas = app.config.saas_app;
  const issuer = saasIssuer(deps.teamDomain, app.clientId);
  const refresh = saas.grant_types.includes('refresh_tokens');
  const scopes = [...saas.scopes, ...(refresh ? ['offline_access'] : [])];
  const publicClient = isPublicClient(app);
  const pkceRequired =
    publicClient ||
    (saas.grant_types.includes('authorization_code_with_pkce') &&
      !saas.grant_types.includes('authorization_code'));
  const client: OidcClientMetadata = {
    client_id: app.clientId,
    ...(!publicClient && { client_secret: app.clientSecretHash }),
    redirect_uris: [...saas.redirect_uris],
    grant_types: ['authorization_code', ...(refresh ? ['refresh_token'] : [])],
    response_types: ['code'],
    token_endpoint_auth_method: publicClient ? 'none' : 'client_secret_basic',
    scope: scopes.join(' '),
  };
  const accessTokenSeconds = unitDurationSeconds(saas.access_token_lifetime);

  const findAccount: ProviderSpec['findAccount'] = async (_ctx, sub, token) => {
    const found = await unrevokedAccount(deps, sub, token);
    if (!found) return undefined;
    const { current, user } = found;
    const login = await rememberedLogin(deps.storage, app.id, sub);
    // Cloudflare evaluates the policies again on refresh (spec §2.2): a user removed from the
    // app's policies since their login gets invalid_grant.
    if (
      token?.kind === 'RefreshToken' &&
      !(await allowedNow(current, user.id, user.email, login, deps.decide))
    )
      return undefined;
    return {
      accountId: sub,
      email: user.email,
      claims: () =>
        userClaims(current.app.config.saas_app, {
          userId: user.id,
          email: user.email,
          identity: login?.identity ?? null,
        }),
    };
  };

  return {
    kind: 'saas',
    namespace: app.id,
    issuer,
    clients: [client],
    scopes,
    claims: claimsByScope(saas),
    ttl: {
      accessToken: accessTokenSeconds,
      idToken: accessTokenSeconds,
      refreshToken: unitDurationSeconds(saas.refresh_token_options.lifetime),
    },
    defaultResource: issuer,
    // The only resource is the app itself (RFC 8707); any other is invalid_target.
    resourceServer: (resource, clientId) =>
      resource === issuer ? { audience: clientId, scope: scopes.join(' ') } : null,
    pkceRequired: () => pkceRequired,
    issueRefreshToken: () => refresh,
    findAccount,
    async introspectAccessToken(token, clientId) {
      const current = deps.currentApp();
      if (!current || clientId !== app.clientId) return null;
      const verified = await verifyIssuedAccessToken(deps, token, {
        issuer,
        clientId,
        appTokensRevokedAt: current.app.tokensRevokedAt,
      });
      if (!verified) return null;
      const { claims } = verified;
      return {
        active: true,
        token_type: 'Bearer',
        iss: claims.iss,
        aud: claims.aud,
        client_id: claims.client_id,
        sub: claims.sub,
        ...(claims.email !== undefined && { email: claims.email }),
        ...(claims.scope !== undefined && { scope: claims.scope }),
        jti: claims.jti,
        iat: claims.iat,
        exp: claims.exp,
      };
    },
    async stillActive(introspection) {
      const { sub, iat } = introspection;
      if (typeof sub !== 'string' || typeof iat !== 'number') return false;
      return (await unrevokedAccount(deps, sub, { iat })) !== null;
    },
    async accessTokenClaims(ctx) {
      const account = ctx.oidc.account as (OidcAccount & { email?: string }) | undefined;
      return account?.email ? { email: account.email } : undefined;
    },
  };
}

/**
 * The app's policies for this user now, with the identity of their login (Allow or Bypass). An
 * authorization and a refresh are identity-time checks, so external evaluation endpoints are
 * asked here (cached briefly per user).
 */
export async function allowedNow(
  entry: SnapshotApp,
  userId: string,
  email: string,
  login: RememberedLogin | null,
  decide: IdentityDecider,
): Promise<boolean> {
  if (!entry.compiled) return false;
  const decision = await decide(entry.compiled, {
    identity: { ...login?.identity, email, userUid: userId },
    ...(login?.ip && { clientIp: login.ip }),
    ...(login?.mtls && { mtls: login.mtls }),
    ...(login?.country && { country: login.country }),
  });
  return decision.decision === 'allow' || decision.decision === 'bypass';
}

export async function rememberLogin(
  storage: OidcStorage,
  appId: string,
  userId: string,
  login: RememberedLogin,
  ttlSeconds: number,
): Promise<void> {
  await storage.upsert(appId, IDENTITY_MODEL, userId, { login }, ttlSeconds);
}

export async function rememberedLogin(
  storage: OidcStorage,
  appId: string,
  userId: string,
): Promise<RememberedLogin | null> {
  const stored = await storage.find(appId, IDENTITY_MODEL, userId);
  return (stored?.login as RememberedLogin | undefined) ?? null;
}
