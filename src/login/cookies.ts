// Cookies on the team domain (spec §4.2): CF_Authorization (the organisation session, HttpOnly)
// and CF_Session (the login flow's CSRF secret, 4h). Parsing is bounded: the Cookie header is
// attacker-chosen.
export const ORG_COOKIE = 'CF_Authorization';
export const FLOW_COOKIE = 'CF_Session';
/** CF_Session lives 4h (spec §4.2). */
export const FLOW_COOKIE_SECONDS = 4 * 3600;

const MAX_COOKIE_HEADER = 16 * 1024;

/** First value of each cookie name (RFC 6265 §5.4 sends the most specific path first). */
export function readCookies(header: string | string[] | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  const text = Array.isArray(header) ? header.join('; ') : (header ?? '');
  if (text.length > MAX_COOKIE_HEADER) return cookies;
  for (const part of text.split(';')) {
    const index = part.indexOf('=');
    if (index < 1) continue;
    const name = part.slice(0, index).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(index + 1).trim());
  }
  return cookies;
}

export interface CookieOptions {
  /** Unix seconds; 0 deletes the cookie. */
  expiresAt: number;
  secure: boolean;
  path?: string;
}

/**
 * A team-domain cookie: always HttpOnly, Secure on https. SameSite=None is what Cloudflare sends
 * (spec §4.2), but browsers drop None without Secure, so plain-http deployments get Lax; Lax
 * still carries the cookie on the top-level GET back from an IdP or from an app host.
 */
export function teamCookie(name: string, value: string, options: CookieOptions): string {
  const parts = [`${name}=${value}`, `Path=${options.path ?? '/'}`];
  parts.push(
    options.expiresAt > 0 ? `Expires=${new Date(options.expiresAt * 1000).toUTCString()}` : 'Max-Age=0',
  );
  parts.push('HttpOnly');
  parts.push(options.secure ? 'SameSite=None' : 'SameSite=Lax');
  if (options.secure) parts.push('Secure');
  return parts.join('; ');
}
