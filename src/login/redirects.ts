// Where the team domain may send a browser. Never to a host that is not the application's own
// (an open redirect from a login page hands sessions to phishers): the login URL names the app
// host, which must be one of the app's hostnames, and `redirect_url` may only be a path on it.
import type { SelfHostedApp } from '../store/repositories/apps.ts';

const MAX_REDIRECT = 2048;
const HOST = /^([a-z0-9](?:[a-z0-9-]{0,62}\.)*[a-z0-9-]{1,63})(?::(\d{1,5}))?$/;

/**
 * A path on the app host, or '/' when `value` is anything else. Refused: absolute and
 * scheme-relative URLs (`//evil`), backslashes (browsers read `/\evil` as `//evil`), control
 * characters and spaces (header splitting), and anything a URL parser would take off-host.
 */
export function safeRedirectPath(value: string | undefined): string {
  return value !== undefined && isSafePath(value) ? value : '/';
}

/** Whether `value` is a path that stays on whichever host it is resolved against (see above). */
export function isSafePath(value: string): boolean {
  if (!value || value.length > MAX_REDIRECT) return false;
  if (!value.startsWith('/') || value.startsWith('//') || value.includes('\\')) return false;
  for (const char of value) {
    const code = char.charCodeAt(0);
    if (code <= 0x20 || (code >= 0x7f && code <= 0x9f)) return false;
  }
  const base = new URL('http://app.invalid');
  return new URL(value, base).origin === base.origin;
}

/**
 * The login URL's `<app host>`, lower-cased, if it is well formed and its port (if any) is the
 * team domain's: app hosts are served by this same listener, so another port is another server.
 */
export function parseAppHost(value: string, teamPort: string): { host: string; hostname: string } | null {
  const host = value.toLowerCase();
  const match = HOST.exec(host);
  if (!match || host.length > 260) return null;
  if (match[2] !== undefined && match[2] !== teamPort) return null;
  return { host, hostname: match[1]! };
}

/** Whether `hostname` is one of the app's hostnames; `*` stands for exactly one label (spec §3.3). */
export function appServesHost(app: SelfHostedApp, hostname: string): boolean {
  const labels = hostname.split('.');
  return app.config.destinations.some((destination) => {
    const pattern = destination.split('/')[0]!.toLowerCase().split('.');
    return (
      pattern.length === labels.length && pattern.every((label, i) => label === '*' || label === labels[i])
    );
  });
}
