// openid-client as the relying party against a SaaS app's issuer: discovery (both metadata
// documents), authorization code + PKCE through the team-domain PIN login, ID token validation,
// userinfo, refresh, revocation and introspection.
import http from 'node:http';
import { decodeProtectedHeader } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyJwt } from '../../src/keys/jwt.ts';
import { TokenVerifier } from '../../src/proxy/tokens.ts';
import { Browser } from '../support/browser.ts';
import { startTestGateway } from '../support/gateway.ts';
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
let app: SaasAppJson;
let clientId: string;
let secret: string;

beforeAll(async () => {
  h = await startOidcHarness();
  app = await h.createSaasApp({
    grant_types: ['authorization_code_with_pkce', 'refresh_tokens'],
    scopes: ['openid', 'email', 'profile', 'groups'],
    access_token_lifetime: '10m',
  });
  clientId = app.saas_app.client_id;
  secret = app.saas_app.client_secret;
});
afterAll(() => h?.close());

describe('discovery', () => {
  it('serves the OpenID configuration and the RFC 8414 document at both URLs', async () => {
    const issuer = issuerOf(h, clientId);
    const config = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Record<
      string,
      unknown
    >;
    expect(config).toMatchObject({
      issuer,
      authorization_endpoint: `${issuer}/authorization`,
      token_endpoint: `${issuer}/token`,
      userinfo_endpoint: `${issuer}/userinfo`,
      jwks_uri: `${issuer}/jwks`,
      revocation_endpoint: `${issuer}/revoke`,
      introspection_endpoint: `${issuer}/introspect`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
    });
    expect(config.scopes_supported).toEqual(
      expect.arrayContaining(['openid', 'email', 'profile', 'groups', 'offline_access']),
    );
    const pathInserted = await fetch(
      `${h.url}/.well-known/oauth-authorization-server/cdn-cgi/access/sso/oidc/${clientId}`,
    );
    expect(pathInserted.status).toBe(200);
    expect(await pathInserted.json()).toEqual(config);
    const underIssuer = await fetch(`${issuer}/.well-known/oauth-authorization-server`);
    expect(await underIssuer.json()).toEqual(config);
    const jwks = (await (await fetch(`${issuer}/jwks`)).json()) as { keys: { kid: string }[] };
    expect(jwks.keys.map((key: { kid: string }) => key.kid)).toContain(
      h.gateway.gateway.keys.signingKey().kid,
    );
  });

  it('answers 404 for an unknown client id and never serves another app', async () => {
    const response = await fetch(`${h.url}/cdn-cgi/access/sso/oidc/nope/.well-known/openid-configuration`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: string }).error).toBe('invalid_client');
  });
});

describe('authorization code + PKCE', () => {
  it('signs in, validates the ID token, calls userinfo, refreshes, introspects and revokes', async () => {
    const config = await discover(h, clientId, secret);
    const { tokens, callback } = await signIn(h, config, 'alice@example.com', {
      scope: 'openid email profile groups',
    });
    // RFC 9207: the authorization response names the issuer.
    expect(callback.searchParams.get('iss')).toBe(issuerOf(h, clientId));
    const idClaims = tokens.claims()!;
    expect(idClaims).toMatchObject({ iss: issuerOf(h, clientId), aud: clientId, email: 'alice@example.com' });
    expect(decodeProtectedHeader(tokens.id_token!)).toMatchObject({ alg: 'RS256' });

    // The access token: RFC 9068, signed with the account's keys, as decision 2 describes.
    const access = tokens.access_token;
    expect(decodeProtectedHeader(access)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' });
    const { payload } = await verifyJwt(h.gateway.gateway.keys, access, {
      issuer: issuerOf(h, clientId),
      audience: clientId,
      type: 'at+jwt',
    });
    expect(payload).toMatchObject({ client_id: clientId, sub: idClaims.sub, email: 'alice@example.com' });
    expect(payload.scope).toContain('email');
    expect(payload.exp! - payload.iat!).toBe(600);
    expect(typeof payload.jti).toBe('string');
    // The proxy's verifier accepts it as a SaaS access token (flow 2).
    const verified = await new TokenVerifier(h.gateway.gateway.keys, h.url).verify(access);
    expect(verified.kind).toBe('access');

    const userinfo = await oidc.fetchUserInfo(config, access, idClaims.sub);
    expect(userinfo).toMatchObject({ sub: idClaims.sub, email: 'alice@example.com', email_verified: true });

    const introspected = await oidc.tokenIntrospection(config, access);
    expect(introspected).toMatchObject({ active: true, client_id: clientId, sub: idClaims.sub });

    // Refresh: rotated, the new pair works, the old refresh token is spent.
    expect(tokens.refresh_token).toBeTruthy();
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.refresh_token).toBeTruthy();
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    expect(refreshed.claims()!.sub).toBe(idClaims.sub);
    const rtIntrospected = await oidc.tokenIntrospection(config, refreshed.refresh_token!);
    expect(rtIntrospected.active).toBe(true);

    // Refresh tokens are stored only as hashes.
    const rows = await h.gateway.gateway.store.db
      .withTables<{ oidc_payloads: { id: string; payload: string; model: string } }>()
      .selectFrom('oidc_payloads')
      .select(['id', 'payload', 'model'])
      .execute();
    const dump = JSON.stringify(rows);
    expect(dump).not.toContain(refreshed.refresh_token!);
    expect(dump).not.toContain(tokens.refresh_token!);

    await oidc.tokenRevocation(config, refreshed.refresh_token!);
    const afterRevoke = await oidc.tokenIntrospection(config, refreshed.refresh_token!);
    expect(afterRevoke.active).toBe(false);
    await expect(oidc.refreshTokenGrant(config, refreshed.refresh_token!)).rejects.toMatchObject({
      error: 'invalid_grant',
    });
  });
});

describe('providers follow the configuration', () => {
  it('rebuilds when the app changes (redirect URIs) and when the signing key rotates', async () => {
    const created = await h.createSaasApp({ grant_types: ['authorization_code'] });
    const id = created.saas_app.client_id;
    const config = await discover(h, id, created.saas_app.client_secret);
    const first = await signIn(h, config, 'alice@example.com');
    const firstKid = decodeProtectedHeader(first.tokens.id_token!).kid;

    // New redirect URIs: the old one is refused from now on, the new one works.
    const current = await h.api('GET', `/apps/${created.id}`);
    const { client_secret: _secret, ...saasApp } = current.body.result.saas_app;
    const updated = await h.api('PUT', `/apps/${created.id}`, {
      ...current.body.result,
      saas_app: { ...saasApp, redirect_uris: ['https://rp.example.com/other'] },
    });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    await h.gateway.gateway.snapshot.refresh();
    const old = await first.browser.request(
      oidc.buildAuthorizationUrl(config, { redirect_uri: 'https://rp.example.com/callback', scope: 'openid' })
        .href,
    );
    expect(old.status).toBe(400);
    const moved = await first.browser.request(
      oidc.buildAuthorizationUrl(config, { redirect_uri: 'https://rp.example.com/other', scope: 'openid' })
        .href,
    );
    expect(moved.status).toBe(303);

    // A rotation: new tokens carry the new kid; the previous key stays published at /jwks.
    const kid = await h.gateway.gateway.keys.rotate();
    expect(kid).not.toBe(firstKid);
    const back = await h.api('PUT', `/apps/${created.id}`, {
      ...current.body.result,
      saas_app: { ...saasApp, redirect_uris: ['https://rp.example.com/callback'] },
    });
    expect(back.status).toBe(200);
    await h.gateway.gateway.snapshot.refresh();
    const again = await signIn(h, config, 'alice@example.com', { browser: first.browser });
    expect(decodeProtectedHeader(again.tokens.id_token!).kid).toBe(kid);
    expect(decodeProtectedHeader(again.tokens.access_token).kid).toBe(kid);
    const jwks = (await (await fetch(`${issuerOf(h, id)}/jwks`)).json()) as { keys: { kid: string }[] };
    expect(jwks.keys.map((key) => key.kid)).toEqual(expect.arrayContaining([kid, firstKid]));
  });
});

describe('several nodes', () => {
  it('share codes and refresh tokens through the store (a code from node A is exchanged at node B)', async () => {
    // Node B: same database and data dir (master key), same team domain, its own listener.
    const nodeB = await startTestGateway({ database: h.gateway.database, settings: { teamDomain: h.url } });
    try {
      await nodeB.gateway.snapshot.refresh();
      const config = await discover(h, clientId, secret);
      const verifier = oidc.randomPKCECodeVerifier();
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: REDIRECT_URI,
        scope: 'openid email',
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      });
      const result = await authorize(h, new Browser(h.port), url.href, 'alice@example.com');
      const code = new URL(result.location!).searchParams.get('code')!;
      const viaB = (form: Record<string, string>) =>
        postForm(
          nodeB.settings.listen,
          new URL(h.url).host,
          `/cdn-cgi/access/sso/oidc/${clientId}/token`,
          form,
        );
      const exchanged = await viaB({
        grant_type: 'authorization_code',
        code,
        redirect_uri: REDIRECT_URI,
        code_verifier: verifier,
      });
      expect(exchanged.status).toBe(200);
      const tokens = exchanged.body as { refresh_token: string };
      // Refresh at node A with the token node B issued; node B then sees the rotation.
      const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
      expect(refreshed.access_token).toBeTruthy();
      await new Promise((resolve) => setTimeout(resolve, 10));
      const refreshAtB = await viaB({ grant_type: 'refresh_token', refresh_token: refreshed.refresh_token! });
      expect(refreshAtB.status).toBe(200);
    } finally {
      await nodeB.server.close();
    }
  });
});

/** POSTs a form to a listener with the given Host header and this app's client credentials. */
function postForm(
  listen: string,
  host: string,
  path: string,
  form: Record<string, string>,
): Promise<{ status: number; body: unknown }> {
  const [hostname, port] = listen.split(':');
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: hostname,
        port: Number(port),
        path,
        method: 'POST',
        headers: {
          host,
          'content-type': 'application/x-www-form-urlencoded',
          'content-length': Buffer.byteLength(body),
          authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
        },
      },
      (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => {
          text += chunk.toString('utf8');
        });
        response.on('end', () => resolve({ status: response.statusCode!, body: JSON.parse(text) }));
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}
