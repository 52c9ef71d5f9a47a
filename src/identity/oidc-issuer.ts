// The issuer a generic `oidc` IdP's ID tokens must name. Cloudflare's config shape gives the
// endpoints (auth_url, token_url, certs_url) but no issuer, while OIDC Core §3.1.3.7 step 2 has
// the relying party compare `iss` exactly with the OP's issuer identifier. Gatehouse finds that
// identifier by OpenID Connect Discovery 1.0 §4: the configuration document lives at
// `<issuer>/.well-known/openid-configuration`, and an OP's endpoints sit under its issuer
// (Okta `…/oauth2/default/v1/authorize`, Keycloak `…/realms/r/protocol/openid-connect/auth`,
// Google `accounts.google.com/o/oauth2/v2/auth`). So each path prefix of auth_url is tried,
// longest first, and the first document that names that prefix as its `issuer` (§4.3) and
// auth_url as its `authorization_endpoint` is this IdP's. An IdP without discovery keeps the
// auth_url's origin as its issuer (the common case for the rest).
import { boundedFetch, UpstreamError, type UpstreamLimits } from './upstream-fetch.ts';

const WELL_KNOWN = '/.well-known/openid-configuration';
/** Found issuers are kept an hour; a failed discovery is retried after five minutes. */
const FOUND_MS = 3600_000;
const NOT_FOUND_MS = 300_000;
const MAX_ENTRIES = 256;

const cache = new Map<string, { issuer: string; until: number }>();

/** Issuer candidates for an auth_url: its path prefixes, longest first, at most the last 6. */
export function issuerCandidates(authUrl: URL): string[] {
  const segments = authUrl.pathname.split('/').filter((segment) => segment !== '');
  const candidates: string[] = [];
  for (let length = segments.length - 1; length >= 0 && candidates.length < 6; length--) {
    const path = segments.slice(0, length).join('/');
    candidates.push(path ? `${authUrl.origin}/${path}` : authUrl.origin);
  }
  return candidates;
}

export async function oidcIssuer(authUrl: URL, limits: UpstreamLimits, now = Date.now()): Promise<string> {
  const key = authUrl.href;
  const cached = cache.get(key);
  if (cached && cached.until > now) return cached.issuer;
  let found: string | null = null;
  for (const candidate of issuerCandidates(authUrl)) {
    found = await discover(candidate, authUrl, limits);
    if (found) break;
  }
  if (cache.size >= MAX_ENTRIES) cache.clear();
  const issuer = found ?? authUrl.origin;
  cache.set(key, { issuer, until: now + (found ? FOUND_MS : NOT_FOUND_MS) });
  return issuer;
}

/** The issuer when `candidate`'s discovery document describes this very IdP; null otherwise. */
async function discover(base: string, authUrl: URL, limits: UpstreamLimits): Promise<string | null> {
  let document: unknown;
  try {
    const response = await boundedFetch(
      `${base}${WELL_KNOWN}`,
      { headers: { accept: 'application/json' } },
      limits,
      'the identity provider',
    );
    if (!response.ok) return null;
    document = await response.json();
  } catch (error) {
    if (error instanceof UpstreamError || error instanceof SyntaxError) return null;
    throw error;
  }
  const { issuer, authorization_endpoint: endpoint } = (document ?? {}) as Record<string, unknown>;
  if (typeof issuer !== 'string' || typeof endpoint !== 'string') return null;
  // §4.3: the document's issuer is the URL it was fetched under (Auth0 keeps a trailing '/').
  if (issuer.replace(/\/$/, '') !== base) return null;
  return endpoint === authUrl.href ? issuer : null;
}
