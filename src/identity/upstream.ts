// Upstream identity providers that redirect (OAuth 2.0 / OpenID Connect): Cloudflare's generic
// `oidc` type and `github`. Both come back to `<team domain>/cdn-cgi/access/callback` with the
// flow token as `state` (RFC 6749 §10.12), and use PKCE (RFC 7636) with a verifier derived from
// the browser's CF_Session secret, so no verifier is stored and a stolen code is useless alone.
import { createHmac } from 'node:crypto';
import * as oidc from 'openid-client';
import { z } from 'zod';
import { oidcIssuer } from './oidc-issuer.ts';
import type { IdentityProvider, LoginIdentity } from './types.ts';
import {
  boundedFetch,
  DEFAULT_UPSTREAM_LIMITS,
  UpstreamError,
  type UpstreamLimits,
} from './upstream-fetch.ts';

export { UpstreamError };

export interface UpstreamFlow {
  /** The flow token, sent as `state`. */
  state: string;
  nonce: string;
  codeVerifier: string;
  redirectUri: string;
}

export interface Upstream {
  authorizationUrl(flow: UpstreamFlow): Promise<URL>;
  /** Exchanges the code from the callback URL and returns the proven identity. */
  complete(callbackUrl: URL, flow: UpstreamFlow): Promise<LoginIdentity>;
}

/** Where Gatehouse talks to GitHub; tests point it at a local server. */
export interface GitHubEndpoints {
  web: string;
  api: string;
}

export const GITHUB_DOTCOM: GitHubEndpoints = { web: 'https://github.com', api: 'https://api.github.com' };

/** The PKCE verifier (43 base64url characters, RFC 7636 §4.1) for a flow in this browser. */
export function codeVerifierFor(browserSecret: string, flowId: string): string {
  return createHmac('sha256', browserSecret).update(`pkce:${flowId}`).digest('base64url');
}

/**
 * https only, except loopback: an IdP on plain http anywhere else would expose codes and client
 * secrets on the network (RFC 6749 §3.1, §10.9).
 */
function upstreamUrl(value: string): URL {
  const url = new URL(value);
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new UpstreamError('identity provider URLs must use https');
  }
  if (url.username || url.password)
    throw new UpstreamError('identity provider URLs must not carry credentials');
  return url;
}

const oidcConfigSchema = z.object({
  client_id: z.string().min(1).max(512),
  auth_url: z.string().url(),
  token_url: z.string().url(),
  certs_url: z.string().url(),
  scopes: z.array(z.string().max(128)).max(32).optional(),
  claims: z.array(z.string().max(128)).max(64).optional(),
  email_claim_name: z.string().min(1).max(128).optional(),
  pkce_enabled: z.boolean().optional(),
});

const githubConfigSchema = z.object({ client_id: z.string().min(1).max(512) });

export function upstreamFor(
  provider: IdentityProvider,
  github: GitHubEndpoints,
  limits: UpstreamLimits = DEFAULT_UPSTREAM_LIMITS,
): Upstream {
  if (!provider.clientSecret) throw new UpstreamError('the identity provider has no client secret');
  if (provider.type === 'oidc') return new OidcUpstream(provider, provider.clientSecret, limits);
  if (provider.type === 'github') return new GitHubUpstream(provider, provider.clientSecret, github, limits);
  throw new UpstreamError('unsupported identity provider type');
}

class OidcUpstream implements Upstream {
  private readonly config: z.infer<typeof oidcConfigSchema>;
  private readonly auth: URL;
  private readonly token: URL;
  private readonly certs: URL;

  constructor(
    private readonly provider: IdentityProvider,
    private readonly clientSecret: string,
    private readonly limits: UpstreamLimits,
  ) {
    const parsed = oidcConfigSchema.safeParse(provider.config);
    if (!parsed.success) throw new UpstreamError('the OIDC identity provider is misconfigured');
    this.config = parsed.data;
    this.auth = upstreamUrl(this.config.auth_url);
    this.token = upstreamUrl(this.config.token_url);
    this.certs = upstreamUrl(this.config.certs_url);
  }

  /** openid-client's view of the IdP; `issuer` is what ID tokens must name (oidc-issuer.ts). */
  private client(issuer: string): oidc.Configuration {
    const client = new oidc.Configuration(
      {
        issuer,
        authorization_endpoint: this.auth.href,
        token_endpoint: this.token.href,
        jwks_uri: this.certs.href,
      },
      this.config.client_id,
      undefined,
      oidc.ClientSecretPost(this.clientSecret),
    );
    // The token and key requests go through the same bounds as every upstream call.
    client[oidc.customFetch] = (url, options) =>
      boundedFetch(url, options as RequestInit, this.limits, 'the identity provider');
    if ([this.auth, this.token, this.certs].some((url) => url.protocol === 'http:'))
      oidc.allowInsecureRequests(client);
    return client;
  }

  async authorizationUrl(flow: UpstreamFlow): Promise<URL> {
    const scopes = new Set(['openid', 'email', 'profile', ...(this.config.scopes ?? [])]);
    const parameters: Record<string, string> = {
      redirect_uri: flow.redirectUri,
      scope: [...scopes].join(' '),
      state: flow.state,
      nonce: flow.nonce,
    };
    if (this.config.pkce_enabled !== false) {
      parameters.code_challenge = await oidc.calculatePKCECodeChallenge(flow.codeVerifier);
      parameters.code_challenge_method = 'S256';
    }
    // The authorization request names no issuer (RFC 6749 §4.1.1).
    return oidc.buildAuthorizationUrl(this.client(this.auth.origin), parameters);
  }

  async complete(callbackUrl: URL, flow: UpstreamFlow): Promise<LoginIdentity> {
    let claims: oidc.IDToken | undefined;
    try {
      const issuer = await oidcIssuer(this.auth, this.limits);
      const tokens = await oidc.authorizationCodeGrant(this.client(issuer), callbackUrl, {
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
        ...(this.config.pkce_enabled !== false && { pkceCodeVerifier: flow.codeVerifier }),
      });
      claims = tokens.claims();
    } catch (error) {
      throw new UpstreamError(`the identity provider refused the login (${oidcErrorCode(error)})`);
    }
    if (!claims) throw new UpstreamError('the identity provider sent no ID token');
    const email = claims[this.config.email_claim_name ?? 'email'];
    if (typeof email !== 'string' || !isEmail(email)) {
      throw new UpstreamError('the identity provider did not send an email address');
    }
    // An address the IdP itself says it has not verified proves nothing (OIDC Core §5.1).
    if (claims.email_verified === false)
      throw new UpstreamError('the identity provider has not verified this email');
    const custom: Record<string, unknown> = {};
    for (const name of this.config.claims ?? []) if (name in claims) custom[name] = claims[name];
    return {
      email: email.toLowerCase(),
      ...(typeof claims.name === 'string' && { name: claims.name.slice(0, 256) }),
      idp: { id: this.provider.id, type: 'oidc' },
      ...(Array.isArray(claims.amr) && { amr: claims.amr.filter((v): v is string => typeof v === 'string') }),
      oidcClaims: custom,
    };
  }
}

/** A short code for the log and the error page, never the IdP's free text. */
function oidcErrorCode(error: unknown): string {
  const code = (error as { code?: unknown; error?: unknown }).error ?? (error as { code?: unknown }).code;
  return typeof code === 'string' && /^[A-Za-z0-9_]{1,64}$/.test(code) ? code : 'invalid_response';
}

class GitHubUpstream implements Upstream {
  private readonly clientId: string;

  constructor(
    private readonly provider: IdentityProvider,
    private readonly clientSecret: string,
    private readonly endpoints: GitHubEndpoints,
    private readonly limits: UpstreamLimits,
  ) {
    const parsed = githubConfigSchema.safeParse(provider.config);
    if (!parsed.success) throw new UpstreamError('the GitHub identity provider is misconfigured');
    this.clientId = parsed.data.client_id;
    upstreamUrl(endpoints.web);
    upstreamUrl(endpoints.api);
  }

  async authorizationUrl(flow: UpstreamFlow): Promise<URL> {
    const url = new URL('/login/oauth/authorize', this.endpoints.web);
    url.searchParams.set('client_id', this.clientId);
    url.searchParams.set('redirect_uri', flow.redirectUri);
    // read:org lists private memberships for the github-organization selector.
    url.searchParams.set('scope', 'read:user user:email read:org');
    url.searchParams.set('state', flow.state);
    url.searchParams.set('code_challenge', await oidc.calculatePKCECodeChallenge(flow.codeVerifier));
    url.searchParams.set('code_challenge_method', 'S256');
    url.searchParams.set('allow_signup', 'false');
    return url;
  }

  async complete(callbackUrl: URL, flow: UpstreamFlow): Promise<LoginIdentity> {
    const params = callbackUrl.searchParams;
    if (params.get('state') !== flow.state) throw new UpstreamError('the login state does not match');
    const code = params.get('code');
    if (!code || code.length > 512) throw new UpstreamError('the identity provider refused the login');
    const token = await this.json<{ access_token?: unknown }>(
      new URL('/login/oauth/access_token', this.endpoints.web),
      {
        method: 'POST',
        headers: { accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          client_id: this.clientId,
          client_secret: this.clientSecret,
          code,
          redirect_uri: flow.redirectUri,
          code_verifier: flow.codeVerifier,
        }).toString(),
      },
    );
    if (typeof token.access_token !== 'string') throw new UpstreamError('GitHub refused the login');
    const auth = { accept: 'application/vnd.github+json', authorization: `Bearer ${token.access_token}` };
    const api = (path: string) => this.json<unknown>(new URL(path, this.endpoints.api), { headers: auth });
    const [user, emails, orgs, teams] = await Promise.all([
      api('/user'),
      api('/user/emails?per_page=100'),
      api('/user/orgs?per_page=100'),
      api('/user/teams?per_page=100'),
    ]);
    // Only the primary address, and only once GitHub has verified it.
    const primary = Array.isArray(emails)
      ? (emails as { email?: unknown; primary?: unknown; verified?: unknown }[]).find(
          (entry) => entry.primary === true && entry.verified === true && typeof entry.email === 'string',
        )
      : undefined;
    if (!primary || !isEmail(primary.email as string)) {
      throw new UpstreamError('GitHub has no verified primary email for this account');
    }
    const membership = new Map<string, Set<string>>();
    for (const org of Array.isArray(orgs) ? (orgs as { login?: unknown }[]) : []) {
      if (typeof org.login === 'string') membership.set(org.login, new Set());
    }
    for (const team of Array.isArray(teams)
      ? (teams as { slug?: unknown; name?: unknown; organization?: { login?: unknown } }[])
      : []) {
      const login = team.organization?.login;
      if (typeof login !== 'string') continue;
      const names = membership.get(login) ?? new Set<string>();
      if (typeof team.slug === 'string') names.add(team.slug);
      if (typeof team.name === 'string') names.add(team.name);
      membership.set(login, names);
    }
    const name = (user as { name?: unknown; login?: unknown } | null)?.name;
    return {
      email: (primary.email as string).toLowerCase(),
      ...(typeof name === 'string' && { name: name.slice(0, 256) }),
      idp: { id: this.provider.id, type: 'github' },
      github: { orgs: [...membership].map(([org, names]) => ({ name: org, teams: [...names] })) },
    };
  }

  /** One bounded request (src/identity/upstream-fetch.ts), JSON only. */
  private async json<T>(url: URL, init: RequestInit): Promise<T> {
    const response = await boundedFetch(url, init, this.limits, 'GitHub');
    if (!response.ok) throw new UpstreamError('GitHub refused the login');
    try {
      return (await response.json()) as T;
    } catch {
      throw new UpstreamError('GitHub sent an unreadable answer');
    }
  }
}

/** A practical address check (RFC 5321 limits), not RFC 5322's full grammar. */
export function isEmail(value: string): boolean {
  return (
    value.length <= 254 &&
    /^[^\s@<>()",;:\\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}$/.test(value)
  );
}
