// The proxy's narrow view of the configuration: only the fields the data plane reads, already
// parsed (durations in seconds, hashes as bytes). The configuration snapshot (src/snapshot/)
// is turned into this shape by one adapter function, so the proxy never depends on how the
// management API stores things, and the hot path never touches the database.
import type { IngressRule } from '../config/settings.ts';
import type { PreparedServiceTokenCredentials } from '../keys/service-token-secrets.ts';
import type { AdmittedBy } from '../policy/session.ts';
import type { Decision, EvaluateOptions, RequestContext } from '../policy/types.ts';

export type SameSite = 'none' | 'lax' | 'strict';

/** Cloudflare's `cors_headers` object (spec §2.1). */
export interface CorsSettings {
  allowAllHeaders: boolean;
  allowAllMethods: boolean;
  allowAllOrigins: boolean;
  allowCredentials: boolean;
  allowedHeaders: readonly string[];
  allowedMethods: readonly string[];
  allowedOrigins: readonly string[];
  /** Seconds; null leaves Access-Control-Max-Age out. */
  maxAge: number | null;
}

/**
 * An application's compiled policies. Identity selectors were checked when the login minted the
 * app token; per request the proxy asks again with the request facts (client address, verified
 * service token, verified linked token) (spec §3.3 "Non-identity selectors … are also checked
 * continuously").
 */
export interface AppPolicies {
  /** Requests without a session: service tokens, linked tokens, no credential (Bypass). */
  evaluate(context: RequestContext, options?: EvaluateOptions): Decision;
  /**
   * Requests with this app's token, which records the policy that admitted the user at login
   * (src/policy/session.ts); null when a fresh login must decide.
   */
  evaluateSession(context: RequestContext, admitted: AdmittedBy): Decision | null;
}

export interface ProxyApp {
  /** `id` == `uid`, the UUID that `linked_app_token.app_uid` names. */
  id: string;
  /** 64-hex AUD tag: the `aud` of this app's tokens. */
  aud: string;
  type: 'self_hosted' | 'saas' | string;
  name: string;
  /**
   * Public hostnames with optional path, `host[/path]`, from `domain` plus `destinations`
   * (`{type:"public", uri}`), or the deprecated `self_hosted_domains` when there are no
   * destinations (spec §2.1). `*` stands for one label or one path segment.
   */
  hosts: readonly string[];
  /** For `saas` apps: the OIDC `client_id`, which names the app in its access tokens (flow 2). */
  oidcClientId: string | null;
  sessionDurationSeconds: number;
  httpOnlyCookie: boolean;
  sameSiteCookie: SameSite;
  /** `path_cookie_attribute`: scope the cookie to the app's path. */
  pathCookie: boolean;
  cors: CorsSettings | null;
  optionsPreflightBypass: boolean;
  serviceAuth401Redirect: boolean;
  /** `read_service_tokens_from_header`, lower-cased; null when unset. */
  serviceTokenHeader: string | null;
  customDenyMessage: string | null;
  customDenyUrl: string | null;
  customNonIdentityDenyUrl: string | null;
  /** `revoke_tokens`: Unix seconds; tokens issued earlier are refused. */
  tokensRevokedAt: number | null;
  policies: AppPolicies;
  /** `oauth_configuration.enabled`: managed OAuth's documents route to the app (managed-routing.ts). */
  managedOAuth?: boolean;
}

/** The optional app settings all unset, as the API creates an app (and as a SaaS app has them). */
export const NO_APP_OPTIONS = Object.freeze({
  cors: null,
  optionsPreflightBypass: false,
  serviceAuth401Redirect: false,
  serviceTokenHeader: null,
  customDenyMessage: null,
  customDenyUrl: null,
  customNonIdentityDenyUrl: null,
} satisfies Partial<ProxyApp>);

/**
 * A service token as the verifier needs it, looked up by `client_id`: hashes only (decision 9),
 * decoded once when the configuration is loaded (from-snapshot.ts) and checked per request with
 * secretOpensToken (src/keys/service-token-secrets.ts).
 */
export interface ServiceTokenRecord extends PreparedServiceTokenCredentials {
  id: string;
  clientId: string;
}

export interface OrgSettings {
  /** `deny_unmatched_requests`: a host routed by ingress but covered by no app is refused. */
  denyUnmatchedRequests: boolean;
  /** `strict_service_token_auth` (spec §4.5). */
  strictServiceTokens: boolean;
}

export interface ProxyConfig {
  apps: readonly ProxyApp[];
  ingress: readonly IngressRule[];
  org: OrgSettings;
  serviceTokens: ReadonlyMap<string, ServiceTokenRecord>;
  /** `revoke_user` and logout: user `sub` → Unix seconds; the user's tokens issued earlier are refused. */
  userRevocations: ReadonlyMap<string, number>;
}

/**
 * Returns the configuration in force, synchronously. The proxy compares the returned object by
 * identity to know when to rebuild its indexes and empty its caches, so a source must return
 * the same object until something changes.
 */
export type ProxyConfigSource = () => ProxyConfig;
