// A gateway with a one-time PIN IdP and a browser-like client that signs in through a SaaS app's
// authorization endpoint on the wire: authorization → interaction → team-domain login (PIN
// mailed to a real SMTP server) → back to the interaction → the client's redirect URI.
import * as oidc from 'openid-client';
import { expect } from 'vitest';
import {
  createPinIdp,
  formField,
  type LoginHarness,
  STAFF_POLICY,
  startLoginHarness,
} from '../login/support.ts';
import { Browser } from '../support/browser.ts';
import { postgresServerUrl } from '../support/databases.ts';

export interface OidcHarness extends LoginHarness {
  pinIdp: string;
  /** Creates an OIDC SaaS app; returns the API's result (client_secret included, shown once). */
  createSaasApp(saasApp: Record<string, unknown>, policies?: unknown[]): Promise<SaasAppJson>;
}

/** The parts of the API's SaaS app object the tests read. */
export interface SaasAppJson {
  id: string;
  uid: string;
  saas_app: { client_id: string; client_secret: string };
}

export const REDIRECT_URI = 'https://rp.example.com/callback';
export { STAFF_POLICY };

/** On PostgreSQL when GATEHOUSE_TEST_DATABASE_URL is set (several nodes share that state), else SQLite. */
export async function startOidcHarness(): Promise<OidcHarness> {
  const h = await startLoginHarness({ server: { kind: postgresServerUrl ? 'postgres' : 'sqlite' } });
  const pinIdp = await createPinIdp(h);
  return Object.assign(h, {
    pinIdp,
    async createSaasApp(saasApp: Record<string, unknown>, policies: unknown[] = [STAFF_POLICY]) {
      const created = await h.api('POST', '/apps', {
        type: 'saas',
        name: `SaaS ${Math.random().toString(36).slice(2, 8)}`,
        policies,
        saas_app: { auth_type: 'oidc', redirect_uris: [REDIRECT_URI], ...saasApp },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      await h.gateway.gateway.snapshot.refresh();
      return created.body.result;
    },
  });
}

export function issuerOf(h: LoginHarness, clientId: string): string {
  return `${h.url}/cdn-cgi/access/sso/oidc/${clientId}`;
}

/** openid-client's configuration through discovery (plain HTTP on loopback is allowed). */
export async function discover(
  h: LoginHarness,
  clientId: string,
  secret?: string,
  auth: 'basic' | 'post' | 'none' = 'basic',
): Promise<oidc.Configuration> {
  const clientAuth =
    auth === 'none' || !secret
      ? oidc.None()
      : auth === 'post'
        ? oidc.ClientSecretPost(secret)
        : oidc.ClientSecretBasic(secret);
  return oidc.discovery(new URL(issuerOf(h, clientId)), clientId, undefined, clientAuth, {
    execute: [oidc.allowInsecureRequests],
  });
}

/**
 * Follows an authorization request like a browser: team-domain redirects are followed, a login
 * page is answered with the PIN flow for `email`; returns the first response that leaves the
 * team domain (the client's redirect URI) or a page that is not a login step.
 */
export async function authorize(
  h: LoginHarness,
  browser: Browser,
  url: string,
  email: string,
): Promise<{ status: number; location: string | null; text: string }> {
  let next = url;
  for (let step = 0; step < 12; step++) {
    const response = await browser.request(next);
    const location = response.location ? new URL(response.location, next).href : null;
    if (response.status >= 300 && response.status < 400 && location) {
      if (!location.startsWith(h.url)) return { status: response.status, location, text: response.text };
      next = location;
      continue;
    }
    if (response.status === 200 && /name="flow"/.test(response.text)) {
      next = await pinLogin(h, browser, response.text, email);
      continue;
    }
    // A self-submitting form (oidc-provider's form_post pages), as a browser's script submits it.
    const autoPost = /<form method="post" action="([^"]+)">/.exec(response.text);
    if (response.status === 200 && autoPost && /forms\[0\]\.submit\(\)/.test(response.text)) {
      const form = Object.fromEntries(
        [...response.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\/>/g)].map((m) => [
          m[1]!,
          m[2]!,
        ]),
      );
      const posted = await browser.request(autoPost[1]!, { form });
      const target = posted.location ? new URL(posted.location, autoPost[1]!).href : null;
      if (!(posted.status >= 300 && posted.status < 400 && target)) {
        return { status: posted.status, location: target, text: posted.text };
      }
      if (!target.startsWith(h.url)) return { status: posted.status, location: target, text: posted.text };
      next = target;
      continue;
    }
    return { status: response.status, location, text: response.text };
  }
  throw new Error('too many redirects');
}

async function pinLogin(h: LoginHarness, browser: Browser, picker: string, email: string): Promise<string> {
  const flow = formField(picker, 'flow');
  const pinIdp = (h as OidcHarness).pinIdp;
  let page = picker;
  if (!/name="email"/.test(page)) {
    const emailForm = await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } });
    expect(emailForm.status).toBe(200);
    page = emailForm.text;
  }
  const pin = h.mailbox.nextPin(email);
  const pinForm = await browser.request(`${h.url}/cdn-cgi/access/otp`, { form: { flow, email } });
  expect(pinForm.status).toBe(200);
  const done = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
    form: { flow, pin: await pin },
  });
  expect(done.status).toBe(302);
  return new URL(done.location!, h.url).href;
}

/** A full code + PKCE sign-in with openid-client; returns the token response and helpers. */
export async function signIn(
  h: LoginHarness,
  config: oidc.Configuration,
  email: string,
  options: { browser?: Browser; scope?: string; extra?: Record<string, string> } = {},
) {
  const browser = options.browser ?? new Browser(h.port);
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: options.scope ?? 'openid email profile',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...options.extra,
  });
  const result = await authorize(h, browser, url.href, email);
  expect(String(result.location), `${result.status} ${result.text.slice(0, 1500)}`).toMatch(
    /^https:\/\/rp\.example\.com\/callback\?/,
  );
  const callback = new URL(result.location!);
  const tokens = await oidc.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
  });
  return { browser, callback, tokens, verifier };
}
