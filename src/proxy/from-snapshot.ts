// The one adapter from the configuration snapshot (src/snapshot/) to the proxy's narrow view.
// Converted once per snapshot (the snapshot is immutable and replaced on change), so requests
// only pay for a reference comparison.

import { prepareServiceTokenCredentials } from '../keys/service-token-secrets.ts';
import { parseGoDuration } from '../policy/duration.ts';
import {
  type CompiledApp,
  type Decision,
  evaluate,
  evaluateSession,
  indexSessions,
} from '../policy/index.ts';
import type { ConfigSnapshot, ConfigSnapshots, SnapshotApp } from '../snapshot/snapshot.ts';
import {
  type AppPolicies,
  NO_APP_OPTIONS,
  type ProxyApp,
  type ProxyConfig,
  type ProxyConfigSource,
} from './config.ts';

/** An app whose policies did not compile lets nothing in (snapshot.ts: "the proxy must then deny"). */
const DENY_ALL: AppPolicies = {
  evaluate: (): Decision => ({ decision: 'deny', policy: null, trace: null }),
  evaluateSession: (): Decision => ({ decision: 'deny', policy: null, trace: null }),
};
const DEFAULT_SESSION_SECONDS = 86_400;

export function proxyConfigFromSnapshot(snapshot: ConfigSnapshot): ProxyConfig {
  return {
    apps: snapshot.apps.map(toProxyApp),
    ingress: snapshot.ingress,
    org: {
      denyUnmatchedRequests: snapshot.account.denyUnmatchedRequests,
      strictServiceTokens: snapshot.account.strictServiceTokenAuth,
    },
    serviceTokens: new Map(
      [...snapshot.serviceTokens].map(([clientId, token]) => [
        clientId,
        { id: token.id, clientId: token.clientId, ...prepareServiceTokenCredentials(token) },
      ]),
    ),
    userRevocations: new Map(
      [...snapshot.userRevocations].map(([sub, at]) => [sub, Math.floor(Date.parse(at) / 1000)]),
    ),
  };
}

/** The proxy's config source over the live snapshot. */
export function snapshotSource(snapshots: ConfigSnapshots): ProxyConfigSource {
  let from: ConfigSnapshot | null = null;
  let config: ProxyConfig | null = null;
  return () => {
    const current = snapshots.current();
    if (current !== from || !config) {
      from = current;
      config = proxyConfigFromSnapshot(current);
    }
    return config;
  };
}

export function compiledPolicies(compiled: CompiledApp): AppPolicies {
  // Indexed here, once per converted snapshot, not per request.
  const sessions = indexSessions(compiled);
  return {
    evaluate: (context, options) => evaluate(compiled, context, options),
    evaluateSession: (context, admitted) => evaluateSession(compiled, context, admitted, sessions),
  };
}

function toProxyApp(entry: SnapshotApp): ProxyApp {
  const { app, compiled } = entry;
  const policies: AppPolicies = compiled ? compiledPolicies(compiled) : DENY_ALL;
  const common = {
    id: app.id,
    aud: app.aud,
    name: app.name,
    tokensRevokedAt: app.tokensRevokedAt === null ? null : Math.floor(Date.parse(app.tokensRevokedAt) / 1000),
    policies,
  };
  if (app.type === 'saas') {
    return {
      ...common,
      type: 'saas',
      hosts: [],
      oidcClientId: app.clientId,
      sessionDurationSeconds: DEFAULT_SESSION_SECONDS,
      httpOnlyCookie: true,
      sameSiteCookie: 'none',
      pathCookie: false,
      ...NO_APP_OPTIONS,
    };
  }
  const { config } = app;
  const sessionMs = parseGoDuration(config.session_duration);
  const cors = config.cors_headers;
  return {
    ...common,
    type: 'self_hosted',
    // `destinations` holds `domain` first (apps.ts), or the deprecated self_hosted_domains.
    hosts: config.destinations.length > 0 ? config.destinations : [app.domain],
    oidcClientId: null,
    sessionDurationSeconds: sessionMs ? Math.floor(sessionMs / 1000) : DEFAULT_SESSION_SECONDS,
    httpOnlyCookie: config.http_only_cookie_attribute,
    sameSiteCookie: config.same_site_cookie_attribute,
    pathCookie: config.path_cookie_attribute,
    cors: cors
      ? {
          allowAllHeaders: cors.allow_all_headers,
          allowAllMethods: cors.allow_all_methods,
          allowAllOrigins: cors.allow_all_origins,
          allowCredentials: cors.allow_credentials,
          allowedHeaders: cors.allowed_headers,
          allowedMethods: cors.allowed_methods,
          allowedOrigins: cors.allowed_origins,
          maxAge: cors.max_age ?? null,
        }
      : null,
    optionsPreflightBypass: config.options_preflight_bypass,
    serviceAuth401Redirect: config.service_auth_401_redirect,
    serviceTokenHeader: config.read_service_tokens_from_header?.toLowerCase() ?? null,
    customDenyMessage: config.custom_deny_message ?? null,
    customDenyUrl: config.custom_deny_url ?? null,
    customNonIdentityDenyUrl: config.custom_non_identity_deny_url ?? null,
    managedOAuth: config.oauth_configuration?.enabled === true,
  };
}
