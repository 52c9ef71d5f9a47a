// The generic `oidc` IdP's issuer, which Cloudflare's config shape does not name: found by
// OpenID Connect Discovery under auth_url's path (src/identity/oidc-issuer.ts). A real
// oidc-provider mounted under a path, as Keycloak (`/realms/<realm>`) and Okta
// (`/oauth2/<server>`) are, signs ID tokens with `iss` = that path; the login accepts them (the
// auth_url's origin alone would not match).
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issuerCandidates } from '../../src/identity/oidc-issuer.ts';
import { Browser } from '../support/browser.ts';
import { freePort } from '../support/ports.ts';
import {
  appSession,
  createSelfHostedApp,
  driveUpstream,
  type LoginHarness,
  startLoginHarness,
  upstreamProvider,
} from './support.ts';

let h: LoginHarness;
let idpServer: http.Server;
let base: string;
const MOUNTS = ['/realms/corp', '/realms/other'];

beforeAll(async () => {
  h = await startLoginHarness();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const providers = MOUNTS.map((mount) =>
    upstreamProvider(h, `${base}${mount}`, {
      claims: { openid: ['sub'], email: ['email', 'email_verified'] },
      claimsOf: () => ({ email_verified: true }),
    }),
  );
  // Each provider under its path, as behind a reverse proxy: oidc-provider reads its mount
  // path from `originalUrl`.
  idpServer = http.createServer((req, res) => {
    const index = MOUNTS.findIndex((mount) => req.url?.startsWith(`${mount}/`));
    if (index < 0) {
      res.writeHead(404).end();
      return;
    }
    (req as { originalUrl?: string }).originalUrl = req.url;
    req.url = req.url!.slice(MOUNTS[index]!.length);
    providers[index]!.callback()(req, res);
  });
  await new Promise<void>((resolve) => idpServer.listen(port, '127.0.0.1', resolve));
});
afterAll(async () => {
  await h.close();
  await new Promise((resolve) => idpServer.close(resolve));
});

async function appFor(name: string, endpoints: { auth: string; token: string; certs: string }) {
  const idp = await h.api('POST', '/identity_providers', {
    name,
    type: 'oidc',
    config: {
      client_id: 'gatehouse',
      client_secret: 'upstream-secret',
      auth_url: endpoints.auth,
      token_url: endpoints.token,
      certs_url: endpoints.certs,
      pkce_enabled: true,
    },
  });
  expect(idp.status).toBe(201);
  const domain = `${name}.localhost`;
  const { aud } = await createSelfHostedApp(h, domain, {
    name,
    auto_redirect_to_identity: true,
    allowed_idps: [idp.body.result.id],
    policies: [{ name: 'all', decision: 'allow', include: [{ everyone: {} }] }],
  });
  await h.gateway.gateway.snapshot.refresh();
  return { aud, host: `${domain}:${h.port}` };
}

async function login(target: { aud: string; host: string }) {
  const browser = new Browser(h.port);
  const start = await browser.request(
    `${h.url}/cdn-cgi/access/login/${target.host}?kid=${target.aud}&meta=${appSession(browser, target.host)}`,
  );
  expect(start.status).toBe(302);
  const callback = await driveUpstream(browser, start.location!, h.url, 'pat');
  return browser.request(callback);
}

describe('OIDC issuer', () => {
  it('lists auth_url path prefixes, longest first', () => {
    expect(issuerCandidates(new URL('https://kc.example/realms/corp/protocol/openid-connect/auth'))).toEqual([
      'https://kc.example/realms/corp/protocol/openid-connect',
      'https://kc.example/realms/corp/protocol',
      'https://kc.example/realms/corp',
      'https://kc.example/realms',
      'https://kc.example',
    ]);
  });

  it('accepts ID tokens from an issuer with a path, found by discovery', async () => {
    const corp = `${base}/realms/corp`;
    const target = await appFor('corp', {
      auth: `${corp}/auth`,
      token: `${corp}/token`,
      certs: `${corp}/jwks`,
    });
    const done = await login(target);
    expect(done.status).toBe(302);
    expect(new URL(done.location!).pathname).toBe('/cdn-cgi/access/authorized');
  });
});
