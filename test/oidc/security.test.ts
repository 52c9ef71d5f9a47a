// The attacks on a SaaS app's issuer, each refused: PKCE downgrade and wrong verifiers, code
// replay and misbinding, redirect-URI variants, bad client credentials, refresh-token reuse,
// users the policies no longer allow, revocations; and the error envelopes the RFCs require.
import { createHash } from 'node:crypto';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser } from '../support/browser.ts';
import {
  authorize,
  discover,
  issuerOf,
  type OidcHarness,
  REDIRECT_URI,
  type SaasAppJson,
  signIn,
  startOidcHarness,
} from './support.ts';

let h: OidcHarness;
let pkceApp: SaasAppJson; // authorization_code_with_pkce only, refresh tokens on
let plainApp: SaasAppJson; // authorization_code (PKCE optional)
let alice: Browser;

const VERIFIER = 'v'.repeat(43);
const CHALLENGE = createHash('sha256').update(VERIFIER).digest('base64url');

beforeAll(async () => {
  h = await startOidcHarness();
  pkceApp = await h.createSaasApp({
    grant_types: ['authorization_code_with_pkce', 'refresh_tokens'],
    scopes: ['openid', 'email'],
  });
  plainApp = await h.createSaasApp({ grant_types: ['authorization_code'], scopes: ['openid', 'email'] });
  alice = new Browser(h.port);
});
afterAll(() => h?.close());

function authUrl(app: SaasAppJson, params: Record<string, string | null> = {}): string {
  const url = new URL(`${issuerOf(h, app.saas_app.client_id)}/authorization`);
  const all: Record<string, string | null> = {
    client_id: app.saas_app.client_id,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: 'openid email',
    state: 'st-123',
    code_challenge: CHALLENGE,
    code_challenge_method: 'S256',
    ...params,
  };
  for (const [name, value] of Object.entries(all)) if (value !== null) url.searchParams.set(name, value);
  return url.href;
}

/** Runs an authorization request as alice; returns where the browser was sent. */
async function authorizeAs(
  app: SaasAppJson,
  params: Record<string, string | null> = {},
  browser = alice,
  email = 'alice@example.com',
) {
  return authorize(h, browser, authUrl(app, params), email);
}

async function codeFor(app: SaasAppJson, params: Record<string, string | null> = {}): Promise<string> {
  const result = await authorizeAs(app, params);
  const code = new URL(result.location!).searchParams.get('code');
  expect(code, result.location ?? result.text).toBeTruthy();
  return code!;
}

async function token(
  app: SaasAppJson,
  form: Record<string, string>,
  auth: 'basic' | 'post' | 'none' = 'basic',
  secret?: string,
) {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  const body = new URLSearchParams(form);
  const id = app.saas_app.client_id;
  const pass = secret ?? app.saas_app.client_secret;
  if (auth === 'basic') headers.authorization = `Basic ${Buffer.from(`${id}:${pass}`).toString('base64')}`;
  if (auth === 'post') {
    body.set('client_id', id);
    body.set('client_secret', pass);
  }
  if (auth === 'none') body.set('client_id', id);
  const response = await fetch(`${issuerOf(h, id)}/token`, { method: 'POST', headers, body });
  // biome-ignore lint/suspicious/noExplicitAny: the endpoint's JSON.
  const json: any = await response.json();
  return { status: response.status, headers: response.headers, body: json };
}

const exchange = (code: string, extra: Record<string, string> = {}) => ({
  grant_type: 'authorization_code',
  code,
  redirect_uri: REDIRECT_URI,
  code_verifier: VERIFIER,
  ...extra,
});

describe('PKCE', () => {
  it('is required where configured, and `plain` is always refused', async () => {
    const missing = new URL(
      (await authorizeAs(pkceApp, { code_challenge: null, code_challenge_method: null })).location!,
    );
    expect(missing.origin + missing.pathname).toBe(REDIRECT_URI);
    expect(missing.searchParams.get('error')).toBe('invalid_request');
    expect(missing.searchParams.get('code')).toBeNull();
    for (const app of [pkceApp, plainApp]) {
      const plain = new URL(
        (await authorizeAs(app, { code_challenge: VERIFIER, code_challenge_method: 'plain' })).location!,
      );
      expect(plain.searchParams.get('error')).toBe('invalid_request');
      expect(plain.searchParams.get('code')).toBeNull();
    }
    // Where PKCE is optional a request without it still works.
    const code = await codeFor(plainApp, { code_challenge: null, code_challenge_method: null });
    const { status, body } = await token(plainApp, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
    });
    expect(status).toBe(200);
    expect(body.access_token).toBeTruthy();
  });

  it('refuses a wrong verifier, and a missing one for a code issued with a challenge', async () => {
    const code = await codeFor(pkceApp);
    const wrong = await token(pkceApp, exchange(code, { code_verifier: 'w'.repeat(43) }));
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('invalid_grant');
    const code2 = await codeFor(plainApp);
    const { code_verifier: _omit, ...withoutVerifier } = exchange(code2);
    const missing = await token(plainApp, withoutVerifier);
    expect(missing.body.error).toMatch(/invalid_grant|invalid_request/);
  });
});

describe('authorization codes', () => {
  it('are single-use, and a replay revokes the tokens the first exchange produced', async () => {
    const code = await codeFor(pkceApp);
    const first = await token(pkceApp, exchange(code));
    expect(first.status).toBe(200);
    expect(first.body.refresh_token).toBeTruthy();
    const replay = await token(pkceApp, exchange(code));
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    const refresh = await token(pkceApp, {
      grant_type: 'refresh_token',
      refresh_token: first.body.refresh_token,
    });
    expect(refresh.body.error).toBe('invalid_grant');
  });

  it('are bound to the redirect URI and to the client', async () => {
    const code = await codeFor(pkceApp);
    const otherRedirect = await token(pkceApp, exchange(code, { redirect_uri: `${REDIRECT_URI}/x` }));
    expect(otherRedirect.body.error).toBe('invalid_grant');
    const code2 = await codeFor(pkceApp);
    // Another app's credentials at its own token endpoint, and at this app's.
    const elsewhere = await token(plainApp, exchange(code2));
    expect(elsewhere.body.error).toBe('invalid_grant');
    const cross = await fetch(`${issuerOf(h, pkceApp.saas_app.client_id)}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${plainApp.saas_app.client_id}:${plainApp.saas_app.client_secret}`).toString('base64')}`,
      },
      body: new URLSearchParams(exchange(code2)),
    });
    expect(cross.status).toBe(401);
    expect(((await cross.json()) as { error: string }).error).toBe('invalid_client');
  });

  it('live at most 60 seconds and are stored only as hashes', async () => {
    const before = Date.now();
    const code = await codeFor(pkceApp);
    const rows = await h.gateway.gateway.store.db
      .withTables<{
        oidc_payloads: { model: string; id: string; payload: string; expires_at: number | string };
      }>()
      .selectFrom('oidc_payloads')
      .selectAll()
      .where('model', '=', 'AuthorizationCode')
      .execute();
    const latest = rows.map((row) => Number(row.expires_at)).sort((a, b) => b - a)[0]!;
    expect(latest - before).toBeLessThanOrEqual(61_000);
    expect(JSON.stringify(rows)).not.toContain(code);
  });
});

describe('redirect URIs', () => {
  const variants = [
    ['prefix', 'https://rp.example.com/callbac'],
    ['suffix', 'https://rp.example.com/callbackx'],
    ['case', 'https://rp.example.com/Callback'],
    ['host case', 'https://RP.example.com/callback'],
    ['trailing slash', 'https://rp.example.com/callback/'],
    ['encoded', 'https://rp.example.com/%63allback'],
    ['extra query', 'https://rp.example.com/callback?x=1'],
    ['other host', 'https://evil.example/callback'],
    ['userinfo', 'https://rp.example.com@evil.example/callback'],
  ];
  it.each(variants)('refuses the %s variant without redirecting', async (_name, uri) => {
    const result = await authorizeAs(pkceApp, { redirect_uri: uri! });
    expect(result.status).toBe(400);
    expect(result.location).toBeNull();
    expect(result.text).toContain('redirect_uri');
  });
});

describe('client authentication', () => {
  it('accepts client_secret_basic and client_secret_post, refuses wrong or missing secrets', async () => {
    for (const auth of ['basic', 'post'] as const) {
      const code = await codeFor(pkceApp);
      const ok = await token(pkceApp, exchange(code), auth);
      expect(ok.status, auth).toBe(200);
    }
    const secret: string = pkceApp.saas_app.client_secret;
    const wrongs = [
      `${secret.slice(0, -1)}${secret.endsWith('0') ? '1' : '0'}`,
      secret.slice(0, 10),
      `${secret}0`,
      plainApp.saas_app.client_secret,
    ];
    for (const wrong of wrongs) {
      for (const auth of ['basic', 'post'] as const) {
        const code = await codeFor(pkceApp);
        const refused = await token(pkceApp, exchange(code), auth, wrong);
        expect(refused.status).toBe(401);
        expect(refused.body.error).toBe('invalid_client');
      }
    }
    const code = await codeFor(pkceApp);
    const none = await token(pkceApp, exchange(code), 'none');
    expect(none.status).toBe(401);
    expect(none.body.error).toBe('invalid_client');
  });

  it('lets a public client (allow_pkce_without_client_secret) in without a secret, only with PKCE', async () => {
    const publicApp = await h.createSaasApp({
      grant_types: ['authorization_code_with_pkce'],
      allow_pkce_without_client_secret: true,
    });
    const config = await discover(h, publicApp.saas_app.client_id, undefined, 'none');
    const { tokens } = await signIn(h, config, 'alice@example.com', { browser: alice });
    expect(tokens.access_token).toBeTruthy();
    const missing = new URL(
      (await authorizeAs(publicApp, { code_challenge: null, code_challenge_method: null })).location!,
    );
    expect(missing.searchParams.get('error')).toBe('invalid_request');
  });
});

describe('error responses', () => {
  it('sends authorization errors to the redirect URI with state and iss (RFC 6749 §4.1.2.1, RFC 9207)', async () => {
    const result = await authorizeAs(pkceApp, {
      response_type: 'code',
      scope: 'openid email unknown',
      prompt: 'bogus',
    });
    const url = new URL(result.location!);
    expect(url.origin + url.pathname).toBe(REDIRECT_URI);
    expect(url.searchParams.get('error')).toBe('invalid_request');
    expect(url.searchParams.get('state')).toBe('st-123');
    expect(url.searchParams.get('iss')).toBe(issuerOf(h, pkceApp.saas_app.client_id));
    expect(url.searchParams.get('code')).toBeNull();
    // Hybrid and implicit are refused; their errors travel in the fragment, as those response
    // types define (RFC 6749 §4.2.2.1), and no token is ever returned.
    for (const responseType of ['token', 'id_token', 'code id_token', 'code token']) {
      const refused = await authorizeAs(pkceApp, { response_type: responseType });
      const target = new URL(refused.location!);
      expect(target.origin + target.pathname).toBe(REDIRECT_URI);
      const params = new URLSearchParams(target.hash.slice(1) || target.search.slice(1));
      expect(params.get('error')).toBe('unsupported_response_type');
      expect(params.get('state')).toBe('st-123');
      expect(params.get('iss')).toBe(issuerOf(h, pkceApp.saas_app.client_id));
      for (const leaked of ['code', 'access_token', 'id_token']) expect(params.get(leaked)).toBeNull();
    }
    // Every authorization is checked against the live session and policies: no silent prompt=none.
    const silent = new URL((await authorizeAs(pkceApp, { prompt: 'none' })).location!);
    expect(silent.searchParams.get('error')).toBe('login_required');
    expect(silent.searchParams.get('state')).toBe('st-123');
    // An unknown client or a missing redirect URI is shown, never redirected (§4.1.2.1).
    const unknown = await authorizeAs(pkceApp, { client_id: 'someone-else' });
    expect(unknown.status).toBe(400);
    expect(unknown.location).toBeNull();
  });

  it('answers token errors as JSON per RFC 6749 §5.2, never cached', async () => {
    const unsupported = await token(pkceApp, { grant_type: 'password', username: 'a', password: 'b' });
    expect(unsupported.status).toBe(400);
    expect(unsupported.body.error).toBe('unsupported_grant_type');
    expect(unsupported.headers.get('cache-control')).toBe('no-store');
    const bad = await token(pkceApp, exchange('not-a-code'));
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: 'invalid_grant', error_description: expect.any(String) });
    const badClient = await token(pkceApp, exchange('x'), 'basic', 'wrong');
    expect(badClient.status).toBe(401);
    expect(badClient.body.error).toBe('invalid_client');
  });
});

describe('policies and revocation', () => {
  it('sends access_denied to the client for a user the app’s policies do not allow', async () => {
    const outsider = new Browser(h.port);
    const result = await authorizeAs(pkceApp, {}, outsider, 'mallory@elsewhere.org');
    const url = new URL(result.location!);
    expect(url.origin + url.pathname).toBe(REDIRECT_URI);
    expect(url.searchParams.get('error')).toBe('access_denied');
    expect(url.searchParams.get('state')).toBe('st-123');
    expect(url.searchParams.get('code')).toBeNull();
  });

  it('refuses to refresh for a user removed from the app’s policy', async () => {
    const policy = await h.api('POST', '/policies', {
      name: 'carol and dave',
      decision: 'allow',
      include: [{ email: { email: 'carol@example.com' } }, { email: { email: 'dave@example.com' } }],
    });
    expect(policy.status).toBe(201);
    const app = await h.createSaasApp({ grant_types: ['authorization_code', 'refresh_tokens'] }, [
      policy.body.result.id,
    ]);
    const config = await discover(h, app.saas_app.client_id, app.saas_app.client_secret);
    const carol = await signIn(h, config, 'carol@example.com');
    const refreshed = await oidc.refreshTokenGrant(config, carol.tokens.refresh_token!);
    const updated = await h.api('PUT', `/policies/${policy.body.result.id}`, {
      name: 'dave',
      decision: 'allow',
      include: [{ email: { email: 'dave@example.com' } }],
    });
    expect(updated.status).toBe(200);
    await h.gateway.gateway.snapshot.refresh();
    await expect(oidc.refreshTokenGrant(config, refreshed.refresh_token!)).rejects.toMatchObject({
      error: 'invalid_grant',
    });
  });

  it('ends refresh, userinfo and introspection on revoke_tokens and on revoke_user', async () => {
    const app = await h.createSaasApp({ grant_types: ['authorization_code', 'refresh_tokens'] });
    const config = await discover(h, app.saas_app.client_id, app.saas_app.client_secret);
    const erin = await signIn(h, config, 'erin@example.com');
    const sub = erin.tokens.claims()!.sub;
    await oidc.fetchUserInfo(config, erin.tokens.access_token, sub);
    expect(await h.api('POST', `/apps/${app.id}/revoke_tokens`, {})).toMatchObject({ status: 202 });
    await h.gateway.gateway.snapshot.refresh();
    await expect(oidc.refreshTokenGrant(config, erin.tokens.refresh_token!)).rejects.toMatchObject({
      error: 'invalid_grant',
    });
    await expect(oidc.fetchUserInfo(config, erin.tokens.access_token, sub)).rejects.toThrow();
    expect((await oidc.tokenIntrospection(config, erin.tokens.access_token)).active).toBe(false);

    // A sign-in after the revocation works again (a new second, so iat is after it) …
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const again = await signIn(h, config, 'erin@example.com', { browser: erin.browser });
    expect((await oidc.tokenIntrospection(config, again.tokens.access_token)).active).toBe(true);
    // … until the user is revoked everywhere.
    const revoked = await h.api('POST', '/organizations/revoke_user', { email: 'erin@example.com' });
    expect(revoked.status).toBe(200);
    await expect(oidc.refreshTokenGrant(config, again.tokens.refresh_token!)).rejects.toMatchObject({
      error: 'invalid_grant',
    });
    expect((await oidc.tokenIntrospection(config, again.tokens.access_token)).active).toBe(false);
  });
});

describe('shared browsers', () => {
  it('never hands one user’s grant to the next user of the same browser', async () => {
    const config = await discover(h, pkceApp.saas_app.client_id, pkceApp.saas_app.client_secret);
    const browser = new Browser(h.port);
    const first = await signIn(h, config, 'frank@example.com', { browser, scope: 'openid email' });
    expect((await browser.request(`${h.url}/cdn-cgi/access/logout`)).status).toBe(200);
    const second = await signIn(h, config, 'grace@example.com', { browser, scope: 'openid email' });
    expect(second.tokens.claims()!.email).toBe('grace@example.com');
    expect(second.tokens.claims()!.sub).not.toBe(first.tokens.claims()!.sub);
    const introspected = await oidc.tokenIntrospection(config, second.tokens.access_token);
    expect(introspected).toMatchObject({ active: true, email: 'grace@example.com' });
  });
});

describe('refresh token rotation', () => {
  it('honours a retry within the grace window; a later reuse revokes the whole family', async () => {
    const config = await discover(h, pkceApp.saas_app.client_id, pkceApp.saas_app.client_secret);
    const { tokens } = await signIn(h, config, 'alice@example.com', {
      browser: alice,
      scope: 'openid email',
    });
    const first = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    // The client lost the response and retries at once: still honoured.
    const retry = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    expect(retry.refresh_token).toBeTruthy();
    // The grace window is over (the row's consumption is moved back past it): reuse is theft.
    await h.gateway.gateway.store.db
      .withTables<{ oidc_payloads: { model: string; consumed_at: number | null } }>()
      .updateTable('oidc_payloads')
      .set({ consumed_at: Date.now() - 60_000 })
      .where('model', '=', 'RefreshToken')
      .where('consumed_at', 'is not', null)
      .execute();
    await expect(oidc.refreshTokenGrant(config, tokens.refresh_token!)).rejects.toMatchObject({
      error: 'invalid_grant',
    });
    for (const descendant of [first.refresh_token!, retry.refresh_token!]) {
      await expect(oidc.refreshTokenGrant(config, descendant)).rejects.toMatchObject({
        error: 'invalid_grant',
      });
    }
  });
});
