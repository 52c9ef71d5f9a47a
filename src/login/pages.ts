// The team domain's pages: IdP picker, one-time PIN (email, then code), block (403), error and
// signed-out. Server-rendered, usable without JavaScript, no external assets except the
// organisation's own logo, and a strict Content-Security-Policy: the one stylesheet is inline and
// allowed by its hash, forms may post only here and to the places a login continues to.
import { createHash } from 'node:crypto';

const STYLE = `body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1d2330;display:grid;place-items:center;min-height:100vh;margin:0}
main{background:#fff;border-radius:8px;padding:2rem 2.5rem;box-shadow:0 1px 4px #0002;max-width:26rem;width:100%}
h1{font-size:1.3rem;margin:0 0 1rem}p{line-height:1.5}label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #9aa3b2;border-radius:4px}
button{width:100%;margin-top:.75rem;padding:.65rem;font-size:1rem;border:0;border-radius:4px;background:#1f4fd1;color:#fff;cursor:pointer}
button:focus,input:focus{outline:3px solid #f5a623;outline-offset:1px}ul{list-style:none;padding:0;margin:0}
.logo{max-height:3rem;max-width:12rem;display:block;margin:0 auto 1rem}footer{margin-top:1.5rem;color:#5b6472;font-size:.85rem}`;
const STYLE_HASH = `'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`;

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

export interface Branding {
  /** The organisation `name`. */
  organisation: string;
  /** `login_design.logo_path`, used only when it is an http(s) URL without credentials. */
  logoUrl: string | null;
}

export interface Page {
  status: number;
  html: string;
  headers: Record<string, string>;
}

/** Only http(s) logo URLs, and only as an exact CSP source (no wildcard image hosts). */
export function logoSource(value: unknown): string | null {
  if (typeof value !== 'string' || value.length > 2048 || !URL.canParse(value)) return null;
  const url = new URL(value);
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password) return null;
  // A CSP source expression cannot hold ; , or quotes; such a URL is not worth the risk.
  return /[;,'"\s]/.test(url.href) ? null : url.href;
}

function render(
  status: number,
  title: string,
  body: string,
  branding: Branding,
  formTargets: readonly string[] = [],
): Page {
  const logo = branding.logoUrl;
  const csp = [
    "default-src 'none'",
    `style-src ${STYLE_HASH}`,
    `img-src ${logo ?? "'none'"}`,
    // Chromium applies form-action to the redirect after a submission too (CSP3 §6.4.1), so a
    // form that continues to an IdP or an app host names that origin, and nothing wider.
    `form-action 'self'${formTargets.map((origin) => ` ${origin}`).join('')}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>${escapeHtml(title)} · ${escapeHtml(branding.organisation)}</title>
<style>${STYLE}</style></head>
<body><main>${logo ? `<img class="logo" src="${escapeHtml(logo)}" alt="${escapeHtml(branding.organisation)}">` : ''}
<h1>${escapeHtml(title)}</h1>
${body}
<footer>${escapeHtml(branding.organisation)} · secured by Gatehouse</footer></main></body></html>
`;
  return {
    status,
    html,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': csp,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
    },
  };
}

export interface PickerEntry {
  id: string;
  name: string;
  type: string;
}

export function pickerPage(
  branding: Branding,
  appName: string,
  flow: string,
  idps: readonly PickerEntry[],
  formTargets: readonly string[],
): Page {
  const items = idps
    .map(
      (idp) => `<li><form method="post" action="/cdn-cgi/access/idp">
<input type="hidden" name="flow" value="${escapeHtml(flow)}"><input type="hidden" name="idp" value="${escapeHtml(idp.id)}">
<button type="submit">Sign in with ${escapeHtml(idp.type === 'onetimepin' ? 'a one-time PIN' : idp.name)}</button></form></li>`,
    )
    .join('\n');
  return render(
    200,
    `Sign in to ${appName}`,
    `<p>Choose how to sign in.</p><ul>${items}</ul>`,
    branding,
    formTargets,
  );
}

export function emailPage(branding: Branding, appName: string, flow: string, message?: string): Page {
  return render(
    message ? 400 : 200,
    `Sign in to ${appName}`,
    `${message ? `<p role="alert">${escapeHtml(message)}</p>` : '<p>We will email you a one-time PIN.</p>'}
<form method="post" action="/cdn-cgi/access/otp">
<input type="hidden" name="flow" value="${escapeHtml(flow)}">
<label for="email">Email address</label>
<input id="email" name="email" type="email" autocomplete="email" required maxlength="254" autofocus>
<button type="submit">Send me a code</button></form>`,
    branding,
  );
}

export function pinPage(
  branding: Branding,
  appName: string,
  flow: string,
  email: string,
  appOrigin: string,
  message?: string,
): Page {
  return render(
    message ? 400 : 200,
    `Sign in to ${appName}`,
    `${
      message
        ? `<p role="alert">${escapeHtml(message)}</p>`
        : // The same words whether or not the address may sign in: no account enumeration.
          `<p>If ${escapeHtml(email)} may sign in, a code is on its way. It is valid for 10 minutes.</p>`
    }
<form method="post" action="/cdn-cgi/access/otp/verify">
<input type="hidden" name="flow" value="${escapeHtml(flow)}">
<label for="pin">One-time PIN</label>
<input id="pin" name="pin" inputmode="numeric" pattern="[0-9]{6}" autocomplete="one-time-code" required maxlength="6" autofocus>
<button type="submit">Sign in</button></form>`,
    branding,
    [appOrigin],
  );
}

export function blockPage(branding: Branding, message: string | null): Page {
  return render(
    403,
    'Access denied',
    `<p>${escapeHtml(message ?? 'You do not have access to this application. Contact your administrator if you think you should.')}</p>`,
    branding,
  );
}

export function errorPage(branding: Branding, status: number, message: string): Page {
  const titles: Record<number, string> = {
    400: 'This sign-in link is not valid',
    401: 'Sign-in failed',
    404: 'Not found',
    429: 'Too many attempts',
    502: 'The identity provider could not be reached',
  };
  return render(status, titles[status] ?? 'Sign-in failed', `<p>${escapeHtml(message)}</p>`, branding);
}

export function signedOutPage(branding: Branding): Page {
  return render(200, 'You have signed out', '<p>Your session has ended in every application.</p>', branding);
}
