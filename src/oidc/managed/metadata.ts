// What managed OAuth publishes at an application host (spec §2.5; mcp-authorization.md §1.2–1.4):
// - RFC 9728 protected-resource metadata at `/.well-known/oauth-protected-resource` and at the
//   path-inserted form `/.well-known/oauth-protected-resource/<path>` (the MCP endpoint's);
// - RFC 8414 authorization-server metadata for the app's issuer `<app origin>/cdn-cgi/access/oauth`
//   at the path-inserted form `/.well-known/oauth-authorization-server/cdn-cgi/access/oauth`
//   (where clients look first for an issuer with a path) and, as Cloudflare serves it, at the root;
// - the RFC 6750 §3 / RFC 9728 §5.1 challenge of a 401.
// The issuer lives under `/cdn-cgi/access/`, which Access reserves on every app host, so its
// endpoints never collide with the origin's own paths. A path-scoped app (`mcp.example.com/mcp`)
// has its issuer under its path (`<origin>/mcp/cdn-cgi/access/oauth`): every app on a host keeps
// an issuer of its own, and the path-inserted documents name the app by that path.

import { PRM_PATH } from '../../proxy/managed-routing.ts';
import { ROUTES } from '../engine.ts';

export const ISSUER_PATH = '/cdn-cgi/access/oauth';
/** oidc-provider's default registration route (RFC 7591 endpoint), under the issuer. */
export const REGISTRATION_ROUTE = '/reg';
export { AS_METADATA_PATH, PRM_PATH } from '../../proxy/managed-routing.ts';

/** The app host's origin as clients see it: the deployment's scheme and the request's Host. */
export function appOrigin(scheme: 'http' | 'https', host: string): string {
  return `${scheme}://${host}`;
}

/** The issuer of the app mounted at `mount` (its path, '' for a whole host) on `origin`. */
export function issuerFor(origin: string, mount = ''): string {
  return `${origin}${mount}${ISSUER_PATH}`;
}

/**
 * The resource a protected-resource metadata URL describes: the origin for the root form, the
 * origin plus the inserted path otherwise (RFC 9728 §3.1). Null when the path is not one of ours.
 */
export function resourceForMetadataPath(origin: string, path: string): string | null {
  if (path === PRM_PATH) return origin;
  if (!path.startsWith(`${PRM_PATH}/`)) return null;
  return `${origin}${path.slice(PRM_PATH.length)}`;
}

export function protectedResourceMetadata(input: {
  resource: string;
  issuer: string;
  name: string;
  scope: string;
}): Record<string, unknown> {
  return {
    resource: input.resource,
    authorization_servers: [input.issuer],
    // The minimal baseline a client should ask for (MCP 2025-11-25 "Scope selection").
    scopes_supported: [input.scope],
    // RFC 6750 §2.1 only: tokens in a query string end up in logs.
    bearer_methods_supported: ['header'],
    resource_name: input.name,
  };
}

export function authorizationServerMetadata(input: {
  issuer: string;
  registration: boolean;
  scope: string;
}): Record<string, unknown> {
  const { issuer } = input;
  return {
    issuer,
    authorization_endpoint: `${issuer}${ROUTES.authorization}`,
    token_endpoint: `${issuer}${ROUTES.token}`,
    ...(input.registration && { registration_endpoint: `${issuer}${REGISTRATION_ROUTE}` }),
    revocation_endpoint: `${issuer}${ROUTES.revocation}`,
    jwks_uri: `${issuer}${ROUTES.jwks}`,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    // OAuth 2.1 / MCP 2025-11-25: S256 only, and advertised (clients refuse without it).
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
    scopes_supported: [input.scope, 'offline_access'],
    // draft-ietf-oauth-client-id-metadata-document §5; RFC 9207.
    client_id_metadata_document_supported: true,
    authorization_response_iss_parameter_supported: true,
  };
}

/**
 * The `WWW-Authenticate` value of a 401 at a managed-OAuth app (RFC 9728 §5.1): where the
 * protected-resource metadata for the requested path is, the scope to ask for (MCP 2025-11-25),
 * and `error="invalid_token"` when a token was presented and refused (RFC 6750 §3.1).
 */
export function bearerChallenge(
  origin: string,
  path: string,
  error: 'invalid_token' | null,
  scope: string,
): string {
  // A quoted-string cannot hold `"` or `\` unescaped (RFC 9110 §5.6.4): percent-encode them.
  const resourcePath = path === '/' ? '' : path.replace(/["\\]/g, (char) => encodeURIComponent(char));
  const parts = [`resource_metadata="${origin}${PRM_PATH}${resourcePath}"`, `scope="${scope}"`];
  if (error) parts.unshift(`error="${error}"`);
  return `Bearer ${parts.join(', ')}`;
}
