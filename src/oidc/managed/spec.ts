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
import { parseGoDuration } from '../../policy/index.ts';
import type { Decision } from '../../policy/types.ts';
import type { IdentityDecider } from '../../policy-external/identity-decision.ts';
import type { SnapshotApp } from '../../snapshot/snapshot.ts';
import type { OAuthConfiguration, SelfHostedApp } from '../../store/repositories/apps.ts';
import type { UserRepository } from '../../store/repositories/users.ts';
import { unrevokedAccount } from '../access-tokens.ts';
import type { OidcStorage } from '../adapter.ts';
import type { OidcAccount, ProviderSpec } from '../engine.ts';
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
  /** Identity-time decisions, external evaluation included (src/policy-external/identity-decision.ts). */
  decide: IdentityDecider;
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

/**
 * Whether `mount` (a path such as `/mcp`, as routing names the matched entry) is the path of one
 * of the app's destinations on `hostname`: a path-scoped app's issuer lives under it.
 */
export function appServesMount(app: SelfHostedApp, hostname: string, mount: string): boolean {
  const wanted = mount.toLowerCase();
  const labels = hostname.toLowerCase().split('.');
  return app.config.destinations.some((destination) => {
    const slash = destination.indexOf('/');
    const pattern = (slash === -1 ? destination : destination.slice(0, slash)).toLowerCase().split('.');
    const path = slash === -1 ? '' : destination.slice(slash).split('?')[0]!.toLowerCase();
    const segments = path
      .split('/')
      .filter((segment) => segment !== '')
      .map((segment) => `/${segment}`)
      .join('');
    return (
      segments === wanted &&
      pattern.length === labels.length &&
      pattern.every((label, i) => label === '*' || label === labels[i])
    );
  });
}

/**
 * The decision for a user now, with the identity of their login (as the login decided it). A
 * refresh and a token's claims are identity-time checks, so external evaluation endpoints are
 * asked here (cached briefly per user), as for SaaS apps.
 */
export function decideFor(
  entry: SnapshotApp,
  userId: string,
  email: string,
  login: RememberedLogin | null,
  decide: IdentityDecider,
): Promise<Decision> {
  if (!entry.compiled) return Promise.resolve({ decision: 'deny', policy: null, trace: null });
  return decide(entry.compiled, {
    identity: { ...login?.identity, email, userUid: userId },
    ...(login?.ip && { clientIp: login.ip }),
    ...(login?.mtls && { mtls: login.mtls }),
    ...(login?.country && { country: login.country }),
  });
}

/** How long a grant (its refresh tokens) lasts: `grant.session_duration`, else the app's session. */
export function grantSeconds(app: ManagedEntry['app']): number {
  const ms = parseGoDuration(
    app.config.oauth_configuration.grant.session_duration ?? app.config.session_duration,
  );
  return ms ? Math.floor(ms / 1000) : DEFAULT_GRANT_SECONDS;
}

/** The issuer of `entry` at `origin`, for the app mounted at `mount` ('' for a whole host). */
export function managedProviderSpec(
  entry: ManagedEntry,
  origin: string,
  mount: string,
  deps: ManagedDeps,
): ProviderSpec {
  const { app } = entry;
  const oauth = app.config.oauth_configuration;
  const issuer = issuerFor(origin, mount);
  const accessTokenSeconds = oauth.grant.access_token_lifetime
    ? unitDurationSeconds(oauth.grant.access_token_lifetime)
    : DEFAULT_ACCESS_TOKEN_SECONDS;

  const findAccount: ProviderSpec['findAccount'] = async (_ctx, sub, token) => {
    const found = await unrevokedAccount(deps, sub, token);
    if (!found) return undefined;
    const { current, user } = found;
    if (token?.kind === 'RefreshToken') {
      const login = await rememberedLogin(deps.storage, app.id, sub);
      if ((await decideFor(current, user.id, user.email, login, deps.decide)).decision !== 'allow')
        return undefined;
    }
    return { accountId: sub, email: user.email, claims: () => ({ sub, email: user.email }) };
  };

  return {
    kind: 'managed_oauth',
    namespace: app.id,
    issuer,
    clients: [],
    scopes: ['openid', 'offline_access'],
    claims: { openid: ['sub'], email: ['email'] },
    ttl: { accessToken: accessTokenSeconds, idToken: accessTokenSeconds, refreshToken: grantSeconds(app) },
    defaultResource: `${origin}${mount}`,
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
      const decision = await decideFor(current, token.accountId, account.email, login, deps.decide);
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
