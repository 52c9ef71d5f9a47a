// Access's endpoints on application hosts (spec §4.1 step 6, §4.6): they answer on every app
// host under /cdn-cgi/access/ and never reach the origin.
// - authorized: the login hands the app token over (`?token=<app JWT>&redirect_url=<path>
//   &app_session=<MAC>`), accepted only with this browser's CF_AppSession cookie; the cookie is
//   set on this host and the browser sent on to a path of this same host.
// - get-identity: the identity behind the app token.
// - logout: clears this host's cookie and continues on the team domain, which ends the session
//   everywhere (the login work owns revocation).
import type http from 'node:http';
import { appSessionSecretFrom, handOffMatches } from '../keys/app-session.ts';
import { TokenError } from '../keys/jwt.ts';
import type { ProxyApp } from './config.ts';
import { APP_COOKIE, type ScannedHeaders, splitCookies } from './headers.ts';
import { htmlReply, jsonReply, type Reply } from './replies.ts';
import type { RequestTarget, Route } from './routing.ts';
import type { AppTokenClaims, TokenVerifier } from './tokens.ts';

export interface EndpointContext {
  req: http.IncomingMessage;
  headers: ScannedHeaders;
  host: string;
  route: Route & { app: ProxyApp };
  target: RequestTarget;
  ip: string;
  teamDomain: string;
  /** The public scheme is https: cookies get `Secure`. */
  secure: boolean;
  tokens: TokenVerifier;
  revoked(claims: { iat: number; sub: string }): boolean;
}

export async function handleAccessEndpoint(context: EndpointContext): Promise<Reply> {
  const { req, target } = context;
  const method = req.method ?? 'GET';
  if (method !== 'GET' && method !== 'HEAD') return htmlReply(404);
  switch (target.matchPath) {
    case '/cdn-cgi/access/authorized':
      return authorized(context);
    case '/cdn-cgi/access/get-identity':
      return getIdentity(context);
    case '/cdn-cgi/access/logout':
      return {
        status: 302,
        headers: {
          location: `${context.teamDomain}/cdn-cgi/access/logout`,
          'set-cookie': appCookie(context, '', 0),
          'cache-control': 'no-store',
        },
        body: '',
      };
    default:
      return htmlReply(404);
  }
}

async function authorized(context: EndpointContext): Promise<Reply> {
  const params = new URLSearchParams(context.target.query);
  const token = params.get('token');
  const claims = token ? await ownToken(context, token) : null;
  if (!token || !claims)
    return htmlReply(401, 'The sign-in link is invalid or has expired. Please sign in again.');
  // Only the browser that began this login may finish it (CSRF, src/keys/app-session.ts).
  const secret = appSessionSecretFrom(context.headers.cookie);
  if (!handOffMatches(secret, token, params.get('app_session')))
    return htmlReply(403, 'This sign-in was started in another browser. Please sign in again.');
  return {
    status: 302,
    headers: {
      location: sameHostPath(params.get('redirect_url')),
      'set-cookie': appCookie(context, token, claims.exp),
      'cache-control': 'no-store',
      // The token travelled in the query string: keep it out of Referer headers.
      'referrer-policy': 'no-referrer',
    },
    body: '',
  };
}

async function getIdentity(context: EndpointContext): Promise<Reply> {
  const { headers } = context;
  const candidates = [...headers.accessToken.slice(0, 1), ...splitCookies(headers.cookie).tokens.slice(0, 2)];
  for (const token of candidates) {
    const claims = await ownToken(context, token.trim());
    if (!claims) continue;
    // Cloudflare's shape (spec §4.6), with what the app token carries. Fields that need the
    // login's identity store (idp, groups, device) are the login work's to fill.
    return jsonReply(200, {
      email: claims.email ?? '',
      user_uuid: claims.sub,
      iat: claims.iat,
      ip: context.ip,
      geo: { country: claims.country ?? '' },
      identity_nonce: claims.identity_nonce ?? '',
      common_name: claims.common_name ?? '',
      auth_status: 'NONE',
      is_warp: false,
      is_gateway: false,
    });
  }
  return jsonReply(401, { error: 'unauthorized', message: 'no valid Access session for this application' });
}

/** The token's claims when it is a live app token of this app; null otherwise. */
async function ownToken(context: EndpointContext, token: string): Promise<AppTokenClaims | null> {
  try {
    const verified = await context.tokens.verify(token);
    if (verified.kind !== 'app' || !verified.claims.aud.includes(context.route.app.aud)) return null;
    return context.revoked(verified.claims) ? null : verified.claims;
  } catch (error) {
    if (error instanceof TokenError) return null;
    throw error;
  }
}

/**
 * Only a path on this host: an absolute URL, a scheme-relative `//evil` or `/\evil` (which
 * browsers read as `//evil`) would make the hand-off an open redirect carrying a fresh session.
 */
export function sameHostPath(redirect: string | null): string {
  if (!redirect?.startsWith('/') || redirect.startsWith('//') || redirect.startsWith('/\\')) return '/';
  // Control characters and spaces could split or bend the Location header.
  if (redirect.length > 2048) return '/';
  for (let i = 0; i < redirect.length; i++) {
    const code = redirect.charCodeAt(i);
    if (code <= 0x20 || code === 0x7f) return '/';
  }
  return redirect;
}

/**
 * The app cookie (spec §4.2): HttpOnly unless the app turned it off, SameSite as the app says,
 * Secure on https, path-scoped with `path_cookie_attribute`. Browsers drop `SameSite=None`
 * without `Secure`, so on plain http it is sent as Lax.
 */
function appCookie(context: EndpointContext, value: string, expiresAt: number): string {
  return appCookieHeader(context.route.app, context.route.appPath, context.secure, value, expiresAt);
}

export function appCookieHeader(
  app: ProxyApp,
  appPath: string,
  secure: boolean,
  value: string,
  expiresAt: number,
): string {
  const literal: string[] = [];
  for (const segment of appPath.split('/').filter((part) => part !== '')) {
    if (segment.includes('*')) break;
    literal.push(segment);
  }
  const path = app.pathCookie && literal.length > 0 ? `/${literal.join('/')}` : '/';
  const sameSite = app.sameSiteCookie === 'none' && !secure ? 'lax' : app.sameSiteCookie;
  const parts = [`${APP_COOKIE}=${value}`, `Path=${path}`];
  parts.push(expiresAt > 0 ? `Expires=${new Date(expiresAt * 1000).toUTCString()}` : 'Max-Age=0');
  if (app.httpOnlyCookie) parts.push('HttpOnly');
  parts.push(`SameSite=${sameSite[0]!.toUpperCase()}${sameSite.slice(1)}`);
  if (secure) parts.push('Secure');
  return parts.join('; ');
}
