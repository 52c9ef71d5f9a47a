// The hand-off CSRF binding (spec §4.1 step 6, §4.2 `CF_AppSession`): the app token travels from
// the team domain to `<app host>/cdn-cgi/access/authorized` in a URL, and a URL can be leaked
// (logs, Referer, a shared screen) or planted (login CSRF: an attacker's own hand-off sent to a
// victim). So the app host accepts a hand-off only from the browser that began the login:
// 1. on the redirect to the login, the app host sets `CF_AppSession` = a random secret S and
//    sends `meta` = SHA-256(S) to the team domain (the secret itself never leaves the cookie);
// 2. the login answers with `app_session` = HMAC-SHA256(key = meta, message = the app token);
// 3. `authorized` recomputes the MAC from its own cookie and refuses on any difference.
// A hand-off replayed into another browser meets another cookie (or none): refused. Knowing
// meta does not help an attacker, who would need an S with that hash.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const APP_SESSION_COOKIE = 'CF_AppSession';
/** 24h, as Cloudflare's (spec §4.2). */
export const APP_SESSION_SECONDS = 24 * 3600;
/** 32 random bytes, base64url. */
const SECRET = /^[A-Za-z0-9_-]{43}$/;
/** SHA-256, base64url: the shape of `meta`. */
export const META = /^[A-Za-z0-9_-]{43}$/;

function newAppSessionSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** A cookie value usable as the secret, else null (the Cookie header is attacker-chosen). */
function validAppSessionSecret(value: string | undefined): string | null {
  return value !== undefined && SECRET.test(value) ? value : null;
}

/** `meta`: what the login sees of the browser's secret. */
export function appSessionMeta(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url');
}

/** `app_session`: the token bound to the browser behind `meta`. */
export function appSessionMac(meta: string, token: string): string {
  return createHmac('sha256', meta).update(token).digest('base64url');
}

/** Whether the hand-off's `app_session` was made for this token and this browser's secret. */
export function handOffMatches(secret: string | null, token: string, mac: string | null): boolean {
  if (!secret || !mac) return false;
  const expected = Buffer.from(appSessionMac(appSessionMeta(secret), token));
  const actual = Buffer.from(mac);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** This browser's CF_AppSession secret from its Cookie header lines, if it holds a good one. */
export function appSessionSecretFrom(cookieHeaders: readonly string[]): string | null {
  for (const header of cookieHeaders) {
    for (const pair of header.split(';')) {
      const [name, value] = pair.trim().split('=', 2);
      if (name === APP_SESSION_COOKIE) return validAppSessionSecret(value);
    }
  }
  return null;
}

/**
 * For the app host's redirect to the login: the `meta` to send and the CF_AppSession cookie to
 * (re)set. A browser keeps its secret while it is good, so two tabs signing in at once both
 * succeed. Lax: the cookie must come along on the top-level GET back from the team domain.
 */
export function beginHandOff(
  cookieHeaders: readonly string[],
  secure: boolean,
): { meta: string; cookie: string } {
  const secret = appSessionSecretFrom(cookieHeaders) ?? newAppSessionSecret();
  const cookie = [
    `${APP_SESSION_COOKIE}=${secret}`,
    'Path=/',
    `Max-Age=${APP_SESSION_SECONDS}`,
    'HttpOnly',
    'SameSite=Lax',
    ...(secure ? ['Secure'] : []),
  ].join('; ');
  return { meta: appSessionMeta(secret), cookie };
}
