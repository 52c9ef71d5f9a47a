// Managed OAuth end to end: the MCP TypeScript SDK client (a real client) against a self-hosted
// app with `oauth_configuration` fronting a tiny MCP server on the SDK. Resource metadata, AS
// metadata, registration, authorization through the team-domain PIN login and the app's
// policies, token, then a tool call whose answer is the identity the origin verified. Then the
// refusals: another app's token, a user the policy does not allow, a redirect URI outside the
// allowed set, a resource that is not the app, a replayed refresh token.
import { createHash, randomBytes } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accessLog,
  createPinIdp,
  createSelfHostedApp,
  type LoginHarness,
  startLoginHarness,
} from '../login/support.ts';
import { Browser } from '../support/browser.ts';
import { TestOAuthProvider } from '../support/oauth-provider.ts';
import {
  connectWithOAuth,
  loopbackFetch,
  type McpFixture,
  REDIRECT_URI,
  scriptedBrowser,
  startMcpFixture,
} from './support.ts';

const kind = process.env.GATEHOUSE_TEST_DATABASE_URL ? 'postgres' : 'sqlite';

let h: LoginHarness;
let fixture: McpFixture;
let idp: string;
let mcpAud: string;
let mcpId: string;
let otherAud: string;
let mcpHost: string;
let otherHost: string;
let local: ReturnType<typeof loopbackFetch>;

const managed = {
  enabled: true,
  dynamic_client_registration: { enabled: true, allow_any_on_loopback: true },
};

beforeAll(async () => {
  h = await startLoginHarness({ server: { kind } });
  mcpHost = `mcp.localhost:${h.port}`;
  otherHost = `other.localhost:${h.port}`;
  local = loopbackFetch();
  fixture = await startMcpFixture(h.url, () => mcpAud);
  idp = await createPinIdp(h);
  const alice = {
    name: 'alice only',
    decision: 'allow',
    include: [{ email: { email: 'alice@example.com' } }],
  };
  const mcp = await createSelfHostedApp(h, 'mcp.localhost', {
    name: 'MCP server',
    policies: [alice],
    oauth_configuration: managed,
  });
  mcpAud = mcp.aud;
  mcpId = mcp.id;
  otherAud = (
    await createSelfHostedApp(h, 'other.localhost', {
      name: 'Other MCP server',
      policies: [alice],
      oauth_configuration: managed,
    })
  ).aud;
  await createSelfHostedApp(h, 'plain.localhost', { name: 'Plain app', policies: [alice] });
  const service = `http://127.0.0.1:${fixture.port}`;
  await h.gateway.gateway.repos.ingress.replace(h.gateway.gateway.account.accountId, [
    { hostname: 'mcp.localhost', service },
    { hostname: 'other.localhost', service },
    { hostname: 'plain.localhost', service },
    { service: 'http_status:404' },
  ]);
  await h.gateway.gateway.snapshot.refresh();
});

afterAll(async () => {
  await local?.close();
  await fixture?.close();
  await h?.close();
});

const mcpUrl = () => new URL(`http://${mcpHost}/mcp`);
const issuer = (host: string) => `http://${host}/cdn-cgi/access/oauth`;

async function json(url: string, init: RequestInit = {}) {
  const response = await local.fetch(url, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null };
}

/** A refresh_token grant at the MCP app's issuer, for `resource` when given. */
function refreshGrant(refreshToken: string, clientId: string, resource?: string) {
  return json(`${issuer(mcpHost)}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: clientId,
      ...(resource !== undefined && { resource }),
    }).toString(),
  });
}

/** A full SDK login for `email`; returns the provider (tokens, client) and the connected client. */
async function login(email: string) {
  const provider = new TestOAuthProvider({
    browse: scriptedBrowser(h, idp, email),
    redirectUris: [REDIRECT_URI],
  });
  const client = await connectWithOAuth(mcpUrl(), provider, local.fetch);
  return { provider, client };
}

describe('discovery at the app host', () => {
  it('answers a non-browser request without a token with 401 and resource_metadata', async () => {
    const response = await local.fetch(mcpUrl(), {
      method: 'POST',
      headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="http://${mcpHost}/.well-known/oauth-protected-resource/mcp", scope="access"`,
    );
    expect(fixture.seen).toHaveLength(0);
  });

  it('leaves browsers to the login, and apps without oauth_configuration as they were', async () => {
    const browser = await local.fetch(mcpUrl(), { headers: { accept: 'text/html' }, redirect: 'manual' });
    expect(browser.status).toBe(302);
    expect(browser.headers.get('location')).toContain(`${h.url}/cdn-cgi/access/login/${mcpHost}`);
    const plainHost = `plain.localhost:${h.port}`;
    const plain = await local.fetch(`http://${plainHost}/.well-known/oauth-protected-resource/mcp`, {
      headers: { accept: 'application/json' },
    });
    expect(plain.status).toBe(401);
    expect(plain.headers.get('www-authenticate')).toBe('Bearer');
    const issuerPath = await local.fetch(`http://${plainHost}/cdn-cgi/access/oauth/token`, {
      method: 'POST',
    });
    // No issuer there: the proxy's own Access endpoint handling answers (not oidc-provider).
    expect(issuerPath.status).toBe(404);
    expect(fixture.seen).toHaveLength(0);
  });

  it('serves RFC 9728 and RFC 8414 metadata, path-inserted and at the root', async () => {
    const prm = await json(`http://${mcpHost}/.well-known/oauth-protected-resource/mcp`);
    expect(prm.status).toBe(200);
    expect(prm.body).toMatchObject({
      resource: `http://${mcpHost}/mcp`,
      authorization_servers: [issuer(mcpHost)],
      bearer_methods_supported: ['header'],
    });
    expect((await json(`http://${mcpHost}/.well-known/oauth-protected-resource`)).body.resource).toBe(
      `http://${mcpHost}`,
    );
    for (const path of [
      '/.well-known/oauth-authorization-server/cdn-cgi/access/oauth',
      '/.well-known/oauth-authorization-server',
    ]) {
      const as = await json(`http://${mcpHost}${path}`);
      expect(as.status, path).toBe(200);
      expect(as.body).toMatchObject({
        issuer: issuer(mcpHost),
        authorization_endpoint: `${issuer(mcpHost)}/authorization`,
        token_endpoint: `${issuer(mcpHost)}/token`,
        registration_endpoint: `${issuer(mcpHost)}/reg`,
        code_challenge_methods_supported: ['S256'],
        client_id_metadata_document_supported: true,
        authorization_response_iss_parameter_supported: true,
      });
    }
    // The issuer's own OIDC discovery names the same endpoints (the SDK's third fallback).
    const discovery = await json(`${issuer(mcpHost)}/.well-known/openid-configuration`);
    expect(discovery.body.issuer).toBe(issuer(mcpHost));
    expect(discovery.body.token_endpoint).toBe(`${issuer(mcpHost)}/token`);
  });
});

describe('the MCP SDK client completes managed OAuth', () => {
  let provider: TestOAuthProvider;

  it('registers, authorizes through the PIN login, gets a token for the app, and calls a tool', async () => {
    const before = fixture.seen.length;
    const session = await login('alice@example.com');
    provider = session.provider;
    // Registration (RFC 7591) happened: the SDK keeps the client it got.
    expect(provider.client?.client_id).toBeTruthy();
    // The authorization request the SDK made: PKCE S256 and the RFC 8707 resource.
    const authorization = provider.authorizationUrls[0]!;
    expect(authorization.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorization.searchParams.get('resource')).toBe(`http://${mcpHost}/mcp`);
    // RFC 9207: the issuer in the authorization response.
    expect(provider.callback?.searchParams.get('iss')).toBe(issuer(mcpHost));
    // The access token: RFC 9068, bound to this app's AUD.
    const token = provider.saved!.access_token;
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' });
    expect(decodeJwt(token)).toMatchObject({ iss: issuer(mcpHost), aud: mcpAud, email: 'alice@example.com' });
    expect(provider.saved!.refresh_token).toBeTruthy();

    const result = await session.client.callTool({ name: 'whoami', arguments: {} });
    expect(result.content).toEqual([{ type: 'text', text: 'alice@example.com' }]);
    await session.client.close();
    // The origin got the normal assertion and never the OAuth token.
    const seen = fixture.seen.slice(before);
    expect(seen.length).toBeGreaterThan(0);
    for (const request of seen) {
      expect(request.authorization).toBeNull();
      expect(request.email).toBe('alice@example.com');
      expect(decodeJwt(request.assertion!)).toMatchObject({
        type: 'app',
        aud: [mcpAud],
        email: 'alice@example.com',
      });
    }
  });

  it('refuses the token at another app (RFC 8707 audience)', async () => {
    const token = provider.saved!.access_token;
    const response = await local.fetch(`http://${otherHost}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: '{}',
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer error="invalid_token", resource_metadata="http://${otherHost}/.well-known/oauth-protected-resource/mcp", scope="access"`,
    );
    // At an app without managed OAuth it is a Gatehouse credential too: refused, never forwarded.
    const seen = fixture.seen.length;
    const plain = await local.fetch(`http://plain.localhost:${h.port}/mcp`, {
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    });
    expect(plain.status).toBe(401);
    expect(plain.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    expect(fixture.seen.length).toBe(seen);
    // A tampered token at its own app too.
    const [header, payload, signature] = token.split('.');
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...decodeJwt(token), aud: otherAud })).toString('base64url')}.${signature}`;
    const tampered = await local.fetch(`http://${mcpHost}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${forged}`, accept: 'application/json' },
    });
    expect(tampered.status).toBe(401);
    expect(payload).toBeTruthy();
  });

  it('rotates refresh tokens, and refuses to refresh for a resource that is not the app', async () => {
    const clientId = provider.client!.client_id;
    const first = provider.saved!.refresh_token!;
    const rotated = await refreshGrant(first, clientId, `http://${mcpHost}/mcp`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.refresh_token).toBeTruthy();
    expect(rotated.body.refresh_token).not.toBe(first);
    expect(decodeJwt(rotated.body.access_token).aud).toBe(mcpAud);
    // A resource that is not this app: invalid_target.
    const elsewhere = await refreshGrant(rotated.body.refresh_token, clientId, `http://${otherHost}/mcp`);
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.body.error).toBe('invalid_target');
  });
});

describe('revocation', () => {
  it('refuses tokens issued before revoke_tokens on the app, and their refresh (decision 3)', async () => {
    const { provider, client } = await login('alice@example.com');
    await client.close();
    const call = () =>
      local.fetch(mcpUrl(), {
        method: 'POST',
        headers: {
          authorization: `Bearer ${provider.saved!.access_token}`,
          accept: 'application/json, text/event-stream',
          'content-type': 'application/json',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
      });
    const first = await call();
    expect(first.status, await first.text()).toBe(200);
    // iat has one-second resolution: revoke strictly after the token was issued.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const revoke = await h.api('POST', `/apps/${mcpId}/revoke_tokens`, {});
    expect(revoke.status, JSON.stringify(revoke.body)).toBe(202);
    await h.gateway.gateway.snapshot.refresh();
    const refused = await call();
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toContain('error="invalid_token"');
    const refreshed = await refreshGrant(provider.saved!.refresh_token!, provider.client!.client_id);
    expect(refreshed.body.error).toBe('invalid_grant');
    // Revocation compares whole seconds of `iat` conservatively: a code issued in the same second
    // as revoke_tokens is refused too. The next login must start in a later second.
    await new Promise((resolve) => setTimeout(resolve, 1100));
  });
});

describe('policies after the grant', () => {
  it('a policy change ends the token at the proxy and its refresh (policies re-run)', async () => {
    const { provider, client } = await login('alice@example.com');
    await client.close();
    const replaced = await h.api('PUT', `/apps/${mcpId}`, {
      type: 'self_hosted',
      name: 'MCP server',
      domain: 'mcp.localhost',
      policies: [
        { name: 'carol only', decision: 'allow', include: [{ email: { email: 'carol@example.com' } }] },
      ],
      oauth_configuration: managed,
    });
    expect(replaced.status).toBe(200);
    await h.gateway.gateway.snapshot.refresh();
    const call = await local.fetch(mcpUrl(), {
      method: 'POST',
      headers: { authorization: `Bearer ${provider.saved!.access_token}`, accept: 'application/json' },
      body: '{}',
    });
    expect(call.status).toBe(401);
    expect(call.headers.get('www-authenticate')).toContain('error="invalid_token"');
    const refreshed = await refreshGrant(provider.saved!.refresh_token!, provider.client!.client_id);
    expect(refreshed.body.error).toBe('invalid_grant');
  });
});

describe('refusals', () => {
  it('answers access_denied to a user the app policy does not allow', async () => {
    const provider = new TestOAuthProvider({
      browse: scriptedBrowser(h, idp, 'bob@example.com'),
      redirectUris: [REDIRECT_URI],
    });
    await expect(connectWithOAuth(mcpUrl(), provider, local.fetch)).rejects.toThrow(/access_denied/);
    expect(provider.callback?.searchParams.get('error')).toBe('access_denied');
    expect(provider.callback?.searchParams.get('iss')).toBe(issuer(mcpHost));
    expect(provider.saved).toBeUndefined();
    // The authentication log records the refusal for the app (spec §6).
    const rows = (await accessLog(h, 'bob@example.com')).filter((row) => row.app_uid === mcpId);
    expect(rows.map((row) => Boolean(row.allowed))).toEqual([false]);
  });

  it('refuses a registration with a redirect URI outside the allowed set', async () => {
    const response = await json(`${issuer(mcpHost)}/reg`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'evil',
        redirect_uris: ['https://evil.example/callback'],
        token_endpoint_auth_method: 'none',
      }),
    });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_redirect_uri');
    const provider = new TestOAuthProvider({
      browse: scriptedBrowser(h, idp, 'alice@example.com'),
      redirectUris: ['https://evil.example/cb'],
    });
    await expect(connectWithOAuth(mcpUrl(), provider, local.fetch)).rejects.toThrow();
    expect(provider.client).toBeUndefined();
  });

  it('refuses an authorization for a resource that is not the app (invalid_target)', async () => {
    const registered = await json(`${issuer(mcpHost)}/reg`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'direct',
        redirect_uris: [REDIRECT_URI],
        token_endpoint_auth_method: 'none',
      }),
    });
    expect(registered.status).toBe(201);
    // RFC 7592: where the client can read its registration, with the token to do so.
    expect(registered.body.registration_client_uri).toBe(
      `${issuer(mcpHost)}/reg/${registered.body.client_id}`,
    );
    const read = await json(registered.body.registration_client_uri, {
      headers: { authorization: `Bearer ${registered.body.registration_access_token}` },
    });
    expect(read.status).toBe(200);
    expect(read.body.redirect_uris).toEqual([REDIRECT_URI]);
    const verifier = randomBytes(32).toString('base64url');
    const authorize = new URL(`${issuer(mcpHost)}/authorization`);
    authorize.search = new URLSearchParams({
      response_type: 'code',
      client_id: registered.body.client_id,
      redirect_uri: REDIRECT_URI,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      state: 'xyz',
      resource: `http://${otherHost}/mcp`,
    }).toString();
    const answer = await new Browser(h.port).request(authorize.href);
    expect(answer.status).toBe(303);
    const back = new URL(answer.location!);
    expect(back.searchParams.get('error')).toBe('invalid_target');
    // Without PKCE: refused too (OAuth 2.1).
    authorize.searchParams.delete('code_challenge');
    authorize.searchParams.set('resource', `http://${mcpHost}/mcp`);
    const noPkce = await new Browser(h.port).request(authorize.href);
    expect(new URL(noPkce.location!).searchParams.get('error')).toBe('invalid_request');
  });
});
