// Dynamic client registration (RFC 7591) as an app's `oauth_configuration` allows it (spec §2.5):
// `dynamic_client_registration.{enabled, allow_any_on_localhost, allow_any_on_loopback,
// allowed_uris}`, where an http(s) entry of `allowed_uris` may end in `/*` (any path below) and
// every other entry matches exactly. Pure functions: the provider calls them before registering.
import type { OAuthConfiguration } from '../../store/repositories/apps.ts';
import { addressScope } from './addresses.ts';

export type DcrSettings = OAuthConfiguration['dynamic_client_registration'];

/** A registered client not used for this long is deleted (its row expires; each use extends it). */
export const UNUSED_REGISTRATION_TTL_SECONDS = 30 * 86_400;

const MAX_REDIRECT_URIS = 10;
const MAX_URI_LENGTH = 2048;
const MAX_BODY_MEMBERS = 40;

export type RegistrationRefusal = {
  error: 'invalid_redirect_uri' | 'invalid_client_metadata';
  description: string;
};

/**
 * Whether a redirect URI may be registered. The candidate must be an absolute URI in canonical
 * form (what a URL parser serialises it to), so `/*` prefixes cannot be escaped with `..`,
 * `%2e%2e`, backslashes or an odd spelling of the host; no fragment or credentials (RFC 6749
 * §3.1.2, spec §2.5).
 */
export function redirectUriAllowed(uri: string, settings: DcrSettings): boolean {
  if (uri.length > MAX_URI_LENGTH || uri.includes('#') || !URL.canParse(uri)) return false;
  const url = new URL(uri);
  if (url.username !== '' || url.password !== '' || url.href !== uri) return false;
  if (url.protocol === 'javascript:' || url.protocol === 'data:' || url.protocol === 'file:') return false;
  const web = url.protocol === 'http:' || url.protocol === 'https:';
  if (web && settings.allow_any_on_localhost && url.hostname === 'localhost') return true;
  if (web && settings.allow_any_on_loopback && addressScope(url.hostname) === 'loopback') return true;
  return settings.allowed_uris.some((entry) => matchesEntry(url, uri, entry));
}

function matchesEntry(url: URL, uri: string, entry: string): boolean {
  if (!entry.endsWith('/*')) {
    if (entry === uri) return true;
    // RFC 8252 §7.3: a native app's loopback redirect gets any port the OS gives it.
    if (url.protocol !== 'http:' || addressScope(url.hostname) !== 'loopback' || !URL.canParse(entry))
      return false;
    const allowed = new URL(entry);
    return (
      allowed.protocol === 'http:' &&
      allowed.hostname === url.hostname &&
      allowed.pathname === url.pathname &&
      allowed.search === url.search
    );
  }
  // `https://app.example/cb/*`: the same origin, and a path under `/cb/` (never `/cbx`).
  const prefix = entry.slice(0, -1);
  if (!URL.canParse(prefix)) return false;
  const base = new URL(prefix);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') return false;
  return url.origin === base.origin && url.pathname.startsWith(base.pathname);
}

/**
 * Checks an RFC 7591 registration request body before the provider sees it: the app must allow
 * registration, every redirect URI must be allowed, and nothing may name a URL Gatehouse would
 * fetch later (`jwks_uri`, `sector_identifier_uri`, `request_uris`: SSRF).
 */
export function checkRegistration(body: unknown, settings: DcrSettings): RegistrationRefusal | null {
  const metadata = (why: string): RegistrationRefusal => ({
    error: 'invalid_client_metadata',
    description: why,
  });
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return metadata('the body must be a JSON object');
  const fields = body as Record<string, unknown>;
  if (Object.keys(fields).length > MAX_BODY_MEMBERS) return metadata('too many members');
  for (const name of ['jwks_uri', 'sector_identifier_uri', 'request_uris']) {
    if (name in fields) return metadata(`${name} is not supported`);
  }
  const uris = fields.redirect_uris;
  if (!Array.isArray(uris) || uris.length === 0 || uris.length > MAX_REDIRECT_URIS) {
    return {
      error: 'invalid_redirect_uri',
      description: `redirect_uris must list 1 to ${MAX_REDIRECT_URIS} URIs`,
    };
  }
  for (const uri of uris) {
    if (typeof uri !== 'string' || !redirectUriAllowed(uri, settings)) {
      return {
        error: 'invalid_redirect_uri',
        description: `redirect URI ${JSON.stringify(String(uri).slice(0, 200))} is not allowed for this application`,
      };
    }
  }
  // Public clients only: a registered secret would have to be stored in clear for oidc-provider
  // to compare (decision 9 stores secrets hashed), and MCP clients register as public clients.
  if (fields.token_endpoint_auth_method !== undefined && fields.token_endpoint_auth_method !== 'none') {
    return metadata('token_endpoint_auth_method must be none (public clients with PKCE)');
  }
  const grants = fields.grant_types;
  if (
    grants !== undefined &&
    (!Array.isArray(grants) || !grants.every((g) => g === 'authorization_code' || g === 'refresh_token'))
  ) {
    return metadata('grant_types may only be authorization_code and refresh_token');
  }
  const responses = fields.response_types;
  if (responses !== undefined && (!Array.isArray(responses) || !responses.every((r) => r === 'code'))) {
    return metadata('response_types may only be code');
  }
  return null;
}
