// Cloudflare's per-app CORS settings (`cors_headers`, spec §2.1): Access answers preflights itself
// and adds the allow headers to the other responses of a cross-origin request, so a browser app
// on another origin can read them (including Gatehouse's own 401 and 403 answers).
import type http from 'node:http';
import type { CorsSettings } from './config.ts';
import type { Reply } from './replies.ts';

/** `*` cannot be combined with credentials (Fetch standard), so the origin is echoed then. */
function allowOrigin(cors: CorsSettings, origin: string): string | null {
  if (!cors.allowAllOrigins && !cors.allowedOrigins.includes(origin)) return null;
  return cors.allowAllOrigins && !cors.allowCredentials ? '*' : origin;
}

export function corsPreflight(cors: CorsSettings, req: http.IncomingMessage, origin: string): Reply {
  const headers: Record<string, string> = { vary: 'Origin', 'cache-control': 'no-store' };
  const allowed = allowOrigin(cors, origin);
  if (allowed !== null) {
    headers['access-control-allow-origin'] = allowed;
    const method = String(req.headers['access-control-request-method'] ?? '');
    headers['access-control-allow-methods'] = cors.allowAllMethods ? method : cors.allowedMethods.join(', ');
    const requested = String(req.headers['access-control-request-headers'] ?? '');
    const allowHeaders = cors.allowAllHeaders ? requested : cors.allowedHeaders.join(', ');
    if (allowHeaders) headers['access-control-allow-headers'] = allowHeaders;
    if (cors.allowCredentials) headers['access-control-allow-credentials'] = 'true';
    if (cors.maxAge !== null) headers['access-control-max-age'] = String(cors.maxAge);
  }
  return { status: 204, headers, body: '' };
}

/** Headers for a non-preflight response to a request from `origin`; null when it is not allowed. */
export function corsResponseHeaders(cors: CorsSettings, origin: string): Record<string, string> | null {
  const allowed = allowOrigin(cors, origin);
  if (allowed === null) return null;
  return {
    'access-control-allow-origin': allowed,
    ...(cors.allowCredentials && { 'access-control-allow-credentials': 'true' }),
  };
}

/**
 * Puts the app's CORS headers on a response, replacing the origin's own (one policy per app, as
 * at Cloudflare's edge) and adding Origin to Vary, since the answer depends on it.
 */
export function applyCors(
  headers: Record<string, string | string[]>,
  cors: Record<string, string>,
): Record<string, string | string[]> {
  for (const name in headers) if (name.startsWith('access-control-allow-')) delete headers[name];
  Object.assign(headers, cors);
  const vary = headers.vary;
  const text = Array.isArray(vary) ? vary.join(', ') : vary;
  if (!text) headers.vary = 'Origin';
  else if (text !== '*' && !/(^|,)\s*origin\s*(,|$)/i.test(text)) headers.vary = `${text}, Origin`;
  return headers;
}
