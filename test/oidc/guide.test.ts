// Cloudflare's guide "Authenticate MCP server to self-hosted apps", end to end on the wire: the
// SaaS app and the linked_app_token policy are created with the official `cloudflare` SDK, the
// user signs in through the SaaS app with openid-client, the access token calls the self-hosted
// app through the gateway's proxy, the origin sees Gatehouse's assertion (never the bearer
// token); after revoke_tokens the token is refused within 5 s.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Cloudflare from 'cloudflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { verifyJwt } from '../../src/keys/jwt.ts';
import { discover, type OidcHarness, REDIRECT_URI, signIn, startOidcHarness } from './support.ts';

let h: OidcHarness;
let origin: http.Server;
const seen: http.IncomingHttpHeaders[] = [];
const WIKI = 'wiki.guide.test';

beforeAll(async () => {
  h = await startOidcHarness();
  origin = http.createServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('wiki page');
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  await new Promise((resolve) => origin?.close(resolve));
  await h?.close();
});

/** Calls the wiki through the gateway's one listener with its Host header, like `curl --resolve`. */
function callWiki(headers: Record<string, string>): Promise<{ status: number; wwwAuthenticate: string }> {
  const { hostname, port } = new URL(h.url);
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: hostname,
        port,
        path: '/docs/page',
        headers: { host: WIKI, accept: 'application/json', ...headers },
      },
      (response) => {
        response.resume();
        response.on('end', () =>
          resolve({
            status: response.statusCode!,
            wwwAuthenticate: String(response.headers['www-authenticate'] ?? ''),
          }),
        );
      },
    );
    request.on('error', reject);
    request.end();
  });
}

describe('SaaS access token → self-hosted app (linked_app_token, flow 2)', () => {
  it('lets the MCP server call the wiki as the user, then refuses the token after revoke_tokens', async () => {
    const gateway = h.gateway.gateway;
    const account_id = gateway.account.accountId;
    const { secret } = await createApiToken(gateway.repos.apiTokens, {
      accountId: account_id,
      name: 'guide',
      permissions: ['Access: Apps and Policies Write', 'Cloudflare Tunnel Write'],
    });
    const client = new Cloudflare({ apiToken: secret, baseURL: `${h.url}/client/v4`, maxRetries: 0 });
    const access = client.zeroTrust.access;

    // Where the wiki lives: the built-in tunnel's ingress.
    const tunnels = [];
    for await (const tunnel of client.zeroTrust.tunnels.cloudflared.list({ account_id }))
      tunnels.push(tunnel);
    const port = (origin.address() as AddressInfo).port;
    await client.zeroTrust.tunnels.cloudflared.configurations.update(tunnels[0]!.id!, {
      account_id,
      config: {
        ingress: [
          { hostname: WIKI, service: `http://127.0.0.1:${port}` },
          { service: 'http_status:404' },
        ] as { hostname: string; service: string }[],
      },
    });

    // The SaaS app (the MCP server's OAuth client) and who may sign in to it.
    const staff = await access.policies.create({
      account_id,
      name: 'Staff',
      decision: 'allow',
      include: [{ email_domain: { domain: 'example.com' } }],
    });
    const mcp = (await access.applications.create({
      account_id,
      type: 'saas',
      name: 'MCP server',
      policies: [staff.id!],
      saas_app: {
        auth_type: 'oidc',
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code_with_pkce', 'refresh_tokens'],
        scopes: ['openid', 'email', 'profile'],
        access_token_lifetime: '5m',
      },
    } as never)) as { id: string; uid: string; saas_app: { client_id: string; client_secret: string } };
    const other = (await access.applications.create({
      account_id,
      type: 'saas',
      name: 'Some other SaaS app',
      policies: [staff.id!],
      saas_app: { auth_type: 'oidc', redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code'] },
    } as never)) as { saas_app: { client_id: string; client_secret: string } };

    // The wiki accepts the MCP server's tokens (Service Auth with linked_app_token).
    const linked = await access.policies.create({
      account_id,
      name: 'Allow MCP server',
      decision: 'non_identity',
      include: [{ linked_app_token: { app_uid: mcp.uid } }],
    });
    const wiki = await access.applications.create({
      account_id,
      type: 'self_hosted',
      name: 'Company wiki',
      domain: WIKI,
      policies: [linked.id!],
    });
    await gateway.snapshot.refresh();

    // Sign in through the SaaS app.
    const config = await discover(h, mcp.saas_app.client_id, mcp.saas_app.client_secret);
    const { tokens, browser } = await signIn(h, config, 'alice@example.com');
    const sub = tokens.claims()!.sub;

    // No token: 401 for a non-browser client. The bearer token: through to the origin.
    expect((await callWiki({})).status).toBe(401);
    const ok = await callWiki({ authorization: `Bearer ${tokens.access_token}` });
    expect(ok.status).toBe(200);
    const received = seen.at(-1)!;
    expect(received.authorization).toBeUndefined();
    expect(JSON.stringify(received)).not.toContain(tokens.access_token);
    const assertion = received['cf-access-jwt-assertion'] as string;
    const { payload } = await verifyJwt(gateway.keys, assertion, { issuer: h.url, audience: wiki.aud! });
    expect(payload).toMatchObject({ sub, email: 'alice@example.com', type: 'app' });
    expect(received['cf-access-authenticated-user-email']).toBe('alice@example.com');
    // Also in Cf-Access-Token.
    expect((await callWiki({ 'cf-access-token': tokens.access_token })).status).toBe(200);

    // A token of another SaaS app is not linked: refused.
    const otherConfig = await discover(h, other.saas_app.client_id, other.saas_app.client_secret);
    const foreign = await signIn(h, otherConfig, 'alice@example.com', { browser });
    expect((await callWiki({ authorization: `Bearer ${foreign.tokens.access_token}` })).status).toBe(403);
    // A forged or altered token: 401 invalid_token.
    const altered = `${tokens.access_token.slice(0, -4)}AAAA`;
    const forged = await callWiki({ authorization: `Bearer ${altered}` });
    expect(forged.status).toBe(401);
    expect(forged.wwwAuthenticate).toContain('invalid_token');

    // revoke_tokens on the SaaS app: refused within 5 s.
    await access.applications.revokeTokens(mcp.id, { account_id });
    const started = Date.now();
    let status = 200;
    while (Date.now() - started < 5000) {
      status = (await callWiki({ authorization: `Bearer ${tokens.access_token}` })).status;
      if (status !== 200) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(status).toBe(401);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
