// Access decisions end to end: a real gateway, real origins, real tokens from the real key ring.
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appSessionMac, appSessionMeta } from '../../src/keys/app-session.ts';
import { verifyJwt } from '../../src/keys/jwt.ts';
import {
  prepareServiceTokenCredentials,
  type ServiceTokenCredentials,
} from '../../src/keys/service-token-secrets.ts';
import type { ProxyApp, ServiceTokenRecord } from '../../src/proxy/config.ts';
import {
  API,
  app,
  appToken,
  BROWSER,
  claimsOf,
  type Origin,
  type ProxyHarness,
  policy,
  route,
  saasAccessToken,
  send,
  startOrigin,
  startProxyHarness,
} from './support.ts';

const now = () => Math.floor(Date.now() / 1000);
const sha = (secret: string) => createHash('sha256').update(secret).digest('hex');
const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

/** A token as the store holds it, decoded as the proxy's configuration loader does. */
function serviceToken(secret: string, extra: Partial<ServiceTokenCredentials> = {}): ServiceTokenRecord {
  return {
    id: randomUUID(),
    clientId: `${randomUUID().replace(/-/g, '')}.access`,
    ...prepareServiceTokenCredentials({
      secretHash: sha(secret),
      previousSecretHash: null,
      previousSecretExpiresAt: null,
      expiresAt: null,
      enabled: true,
      ...extra,
    }),
  };
}

let harness: ProxyHarness;
let origin: Origin;
const st = serviceToken('s3cret');
const expired = serviceToken('s3cret', { expiresAt: iso(now() - 10) });
const disabled = serviceToken('s3cret', { enabled: false });
const rotated = serviceToken('new-secret', {
  previousSecretHash: sha('old-secret'),
  previousSecretExpiresAt: iso(now() + 3600),
});
const rotatedLong = serviceToken('newer-secret', {
  previousSecretHash: sha('older-secret'),
  previousSecretExpiresAt: iso(now() - 1),
});
const mcp = app({
  name: 'mcp',
  hosts: ['mcp.test'],
  policies: [policy('allow', [{ email_domain: { domain: 'example.com' } }])],
});
const saas = app({ name: 'saas', type: 'saas', oidcClientId: 'saas-client-1' });
const unlinked = app({
  name: 'unlinked',
  hosts: ['unlinked.test'],
  policies: [policy('allow', [{ everyone: {} }])],
});
const wiki = app({
  name: 'wiki',
  hosts: ['wiki.test'],
  customDenyMessage: 'Ask IT for access to the wiki.',
  policies: [
    policy('allow', [{ email: { email: 'alice@example.com' } }]),
    policy('non_identity', [
      { service_token: { token_id: st.id } },
      { service_token: { token_id: rotated.id } },
    ]),
    policy('non_identity', [
      { linked_app_token: { app_uid: mcp.id } },
      { linked_app_token: { app_uid: saas.id } },
    ]),
  ],
});
const admin = app({
  name: 'admin',
  hosts: ['wiki.test/admin'],
  policies: [policy('allow', [{ email: { email: 'bob@example.com' } }])],
});
const wildcard = app({
  name: 'wild',
  hosts: ['*.apps.test'],
  policies: [policy('allow', [{ everyone: {} }])],
});
const open = app({
  name: 'public',
  hosts: ['public.test'],
  policies: [policy('bypass', [{ everyone: {} }])],
});
// Loopback clients are blocked: the Block's request selector is checked on every request, after
// a login (from elsewhere) that the Allow admitted.
const LOOPBACK_BLOCK = () => policy('deny', [{ ip: { ip: '127.0.0.0/8' } }]);
const blocked = app({
  name: 'blocked',
  hosts: ['blocked.test'],
  customDenyMessage: 'Ask IT for access to the wiki.',
  policies: [LOOPBACK_BLOCK(), policy('allow', [{ email: { email: 'alice@example.com' } }])],
});
const denyUrl = app({
  name: 'deny-url',
  hosts: ['denyurl.test'],
  customDenyUrl: 'https://intranet.example.com/denied',
  policies: [LOOPBACK_BLOCK(), policy('allow', [{ email: { email: 'bob@example.com' } }])],
});
// Admits members of an OIDC group: a claim the app token does not carry (spec §3.3).
const IDP = randomUUID();
const engineersAllow = policy(
  'allow',
  [{ oidc: { claim_name: 'groups', claim_value: 'eng', identity_provider_id: IDP } }],
  { require: [{ ip: { ip: '127.0.0.0/8' } }] },
);
const engineers = app({ name: 'engineers', hosts: ['engineers.test'], policies: [engineersAllow] });
const svc = app({
  name: 'svc',
  hosts: ['svc.test'],
  serviceAuth401Redirect: true,
  serviceTokenHeader: 'x-service-credentials',
  policies: [policy('non_identity', [{ any_valid_service_token: {} }])],
});
const cors = app({
  name: 'cors',
  hosts: ['cors.test'],
  cors: {
    allowAllHeaders: false,
    allowAllMethods: false,
    allowAllOrigins: false,
    allowCredentials: true,
    allowedHeaders: ['content-type'],
    allowedMethods: ['GET', 'POST'],
    allowedOrigins: ['https://spa.example.com'],
    maxAge: 600,
  },
  policies: [policy('allow', [{ everyone: {} }])],
});
const preflight = app({
  name: 'preflight',
  hosts: ['preflight.test'],
  optionsPreflightBypass: true,
  policies: [policy('allow', [{ everyone: {} }])],
});
const teapot = app({
  name: 'teapot',
  hosts: ['teapot.test'],
  policies: [policy('bypass', [{ everyone: {} }])],
});
const apps: ProxyApp[] = [
  mcp,
  saas,
  unlinked,
  wiki,
  admin,
  wildcard,
  open,
  blocked,
  denyUrl,
  engineers,
  svc,
  cors,
  preflight,
  teapot,
];

beforeAll(async () => {
  origin = await startOrigin();
  harness = await startProxyHarness({
    apps,
    ingress: [
      route('teapot.test', 'http_status:418'),
      route('*.apps.test', origin),
      route('unmatched.test', origin),
      ...[
        'wiki.test',
        'mcp.test',
        'unlinked.test',
        'public.test',
        'blocked.test',
        'denyurl.test',
        'engineers.test',
        'svc.test',
        'cors.test',
        'preflight.test',
      ].map((host) => route(host, origin)),
      { service: 'http_status:404' },
    ],
    serviceTokens: new Map(
      [st, expired, disabled, rotated, rotatedLong].map((token) => [token.clientId, token]),
    ),
  });
});

afterAll(async () => {
  await harness?.close();
  await origin?.close();
});

/** Sends and reports whether the origin saw the request. */
async function call(options: Parameters<typeof send>[1]) {
  const before = origin.seen.length;
  const response = await send(harness.port, options);
  return { ...response, reached: origin.seen.length > before, seen: origin.seen[origin.seen.length - 1]! };
}

describe('requests without credentials', () => {
  it('sends a browser to the team login with the app AUD and the path', async () => {
    const response = await call({ host: 'wiki.test', path: '/page?x=1', headers: [BROWSER] });
    expect(response.status).toBe(302);
    const location = new URL(response.headers.location!);
    expect(`${location.origin}${location.pathname}`).toBe(
      `${harness.teamDomain}/cdn-cgi/access/login/wiki.test`,
    );
    expect(location.searchParams.get('kid')).toBe(wiki.aud);
    expect(location.searchParams.get('redirect_url')).toBe('/page?x=1');
    expect(response.reached).toBe(false);
  });

  it('answers API clients and XHR with 401', async () => {
    const api = await call({ host: 'wiki.test', headers: [API] });
    expect(api.status).toBe(401);
    expect(api.headers['www-authenticate']).toBe('Bearer');
    const xhr = await call({ host: 'wiki.test', headers: [BROWSER, ['x-requested-with', 'XMLHttpRequest']] });
    expect(xhr.status).toBe(401);
    expect(api.reached || xhr.reached).toBe(false);
  });

  it('answers 401 instead of a login redirect with service_auth_401_redirect', async () => {
    const response = await call({ host: 'svc.test', headers: [BROWSER] });
    expect(response.status).toBe(401);
    expect(response.reached).toBe(false);
  });

  it('lets bypass traffic through without any identity', async () => {
    const response = await call({
      host: 'public.test',
      headers: [API, ['cf-access-jwt-assertion', 'forged']],
    });
    expect(response.status).toBe(200);
    expect(response.seen.headers['cf-access-jwt-assertion']).toBeUndefined();
  });

  it('answers http_status services itself', async () => {
    const response = await call({ host: 'teapot.test', headers: [API] });
    expect(response.status).toBe(418);
    expect(response.reached).toBe(false);
  });
});

describe('routing', () => {
  it('picks the most specific app path, without inheritance, also through encoded traversal', async () => {
    const kidFor = async (path: string) =>
      new URL(
        (await call({ host: 'wiki.test', path, headers: [BROWSER] })).headers.location!,
      ).searchParams.get('kid');
    expect(await kidFor('/admin')).toBe(admin.aud);
    expect(await kidFor('/admin/users')).toBe(admin.aud);
    expect(await kidFor('/ADMIN/users')).toBe(admin.aud);
    expect(await kidFor('/public/..%2Fadmin')).toBe(admin.aud);
    expect(await kidFor('/public/%2e%2e/admin')).toBe(admin.aud);
    expect(await kidFor('/administrator')).toBe(wiki.aud);
    expect(await kidFor('/')).toBe(wiki.aud);
  });

  it('matches one label with a wildcard host', async () => {
    const one = await call({ host: 'team.apps.test', headers: [BROWSER] });
    expect(new URL(one.headers.location!).searchParams.get('kid')).toBe(wildcard.aud);
    // Two labels: routed by ingress (cloudflared's `*.` matches any depth) but covered by no app.
    const two = await call({ host: 'a.team.apps.test', headers: [BROWSER] });
    expect(two.status).toBe(403);
    expect(two.reached).toBe(false);
  });

  it('refuses hosts routed by ingress but covered by no app, unless deny_unmatched_requests is off', async () => {
    const denied = await call({ host: 'unmatched.test', headers: [API] });
    expect(denied.status).toBe(403);
    expect(denied.reached).toBe(false);
    harness.setConfig({ org: { ...harness.config.org, denyUnmatchedRequests: false } });
    try {
      const allowed = await call({
        host: 'unmatched.test',
        headers: [API, ['cf-access-authenticated-user-email', 'ceo@example.com']],
      });
      expect(allowed.status).toBe(200);
      expect(allowed.seen.headers['cf-access-authenticated-user-email']).toBeUndefined();
    } finally {
      harness.setConfig({ org: { ...harness.config.org, denyUnmatchedRequests: true } });
    }
  });

  it('gives unknown hosts the plain 404', async () => {
    const response = await call({ host: 'nowhere.test', headers: [API] });
    expect(response.status).toBe(404);
    expect(response.body).toBe('Not found\n');
  });
});

describe('app sessions', () => {
  it('forwards a cookie session with Gatehouse identity headers and strips what the client spoofed', async () => {
    const token = await appToken(harness, wiki);
    const response = await call({
      host: 'wiki.test',
      path: '/doc',
      headers: [
        BROWSER,
        ['cookie', `theme=dark; CF_Authorization=${token}; lang=en`],
        ['cf-access-jwt-assertion', 'forged'],
        ['Cf-Access-Authenticated-User-Email', 'ceo@example.com'],
        ['x-forwarded-for', '10.9.9.9'],
        ['connection', 'keep-alive, x-drop-me'],
        ['x-drop-me', 'hop'],
      ],
    });
    expect(response.status).toBe(200);
    const { headers, rawHeaders } = response.seen;
    expect(headers['cf-access-jwt-assertion']).toBe(token);
    expect(headers['cf-access-authenticated-user-email']).toBe('alice@example.com');
    expect(rawHeaders.filter((name) => name.toLowerCase() === 'cf-access-jwt-assertion')).toHaveLength(1);
    expect(headers.cookie).toBe('theme=dark; lang=en');
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-forwarded-host']).toBe('wiki.test');
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers['x-drop-me']).toBeUndefined();
    expect(headers.host).toBe('wiki.test');
  });

  it('accepts the app token in Cf-Access-Token and Authorization: Bearer and removes it', async () => {
    const token = await appToken(harness, wiki);
    const viaHeader = await call({ host: 'wiki.test', headers: [API, ['cf-access-token', token]] });
    expect(viaHeader.status).toBe(200);
    expect(viaHeader.seen.headers['cf-access-token']).toBeUndefined();
    const viaBearer = await call({ host: 'wiki.test', headers: [API, ['authorization', `Bearer ${token}`]] });
    expect(viaBearer.status).toBe(200);
    expect(viaBearer.seen.headers.authorization).toBeUndefined();
    expect(viaBearer.seen.headers['cf-access-jwt-assertion']).toBe(token);
  });

  it("leaves the origin's own Authorization alone", async () => {
    const token = await appToken(harness, wiki);
    const response = await call({
      host: 'wiki.test',
      headers: [API, ['cf-access-token', token], ['authorization', 'Basic dXNlcjpwYXNz']],
    });
    expect(response.status).toBe(200);
    expect(response.seen.headers.authorization).toBe('Basic dXNlcjpwYXNz');
  });

  it('blocks a valid session by a Block policy checked per request: block page, JSON or custom_deny_url', async () => {
    const alice = await appToken(harness, blocked);
    expect(claimsOf(alice).policy_id).toEqual(expect.any(String));
    const page = await call({
      host: 'blocked.test',
      headers: [BROWSER, ['cookie', `CF_Authorization=${alice}`]],
    });
    expect(page.status).toBe(403);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.body).toContain('Ask IT for access to the wiki.');
    const api = await call({ host: 'blocked.test', headers: [API, ['cf-access-token', alice]] });
    expect(api.status).toBe(403);
    const bob = await appToken(harness, denyUrl, { email: 'bob@example.com' });
    const redirect = await call({
      host: 'denyurl.test',
      headers: [BROWSER, ['cookie', `CF_Authorization=${bob}`]],
    });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.location).toBe('https://intranet.example.com/denied');
    expect(page.reached || api.reached || redirect.reached).toBe(false);
  });

  it('admits by the policy recorded at login, re-checking only its request selectors', async () => {
    // The login saw the OIDC group and recorded the admitting policy; the token has only the email.
    const allow = engineersAllow;
    const session = await appToken(harness, engineers, {
      email: 'bob@example.com',
      policy_id: allow.id,
      policy_precedence: allow.precedence,
    });
    const ok = await call({ host: 'engineers.test', headers: [API, ['cf-access-token', session]] });
    expect(ok.status).toBe(200);
    expect(ok.seen.headers['cf-access-authenticated-user-email']).toBe('bob@example.com');
    // A token without the claims, or naming a policy the app no longer has, needs a fresh login.
    for (const stale of [
      await appToken(harness, engineers, { email: 'bob@example.com' }),
      await appToken(harness, engineers, { policy_id: randomUUID(), policy_precedence: allow.precedence }),
      await appToken(harness, engineers, { policy_id: allow.id, policy_precedence: allow.precedence + 1 }),
    ]) {
      const api = await call({ host: 'engineers.test', headers: [API, ['cf-access-token', stale]] });
      expect(api.status).toBe(401);
      expect(api.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
      const browser = await call({
        host: 'engineers.test',
        headers: [BROWSER, ['cookie', `CF_Authorization=${stale}`]],
      });
      expect(browser.status).toBe(302);
      expect(browser.headers.location).toContain('/cdn-cgi/access/login/engineers.test');
      expect(api.reached || browser.reached).toBe(false);
    }
  });

  it('does not let a session for the parent path into a more specific app', async () => {
    const token = await appToken(harness, wiki);
    const response = await call({
      host: 'wiki.test',
      path: '/admin',
      headers: [API, ['cf-access-token', token]],
    });
    expect(response.status).toBe(403);
    expect(response.reached).toBe(false);
  });

  it("refuses tokens issued before the app's revoke_tokens or the user's revocation", async () => {
    const token = await appToken(harness, wiki);
    const index = harness.config.apps.indexOf(wiki);
    const revokedApps = [...harness.config.apps];
    revokedApps[index] = { ...wiki, tokensRevokedAt: now() + 5 };
    harness.setConfig({ apps: revokedApps });
    try {
      const response = await call({ host: 'wiki.test', headers: [API, ['cf-access-token', token]] });
      expect(response.status).toBe(401);
      expect(response.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
      const browser = await call({
        host: 'wiki.test',
        headers: [BROWSER, ['cookie', `CF_Authorization=${token}`]],
      });
      expect(browser.status).toBe(302);
    } finally {
      harness.setConfig({ apps });
    }
    const linked = await appToken(harness, mcp);
    harness.setConfig({ userRevocations: new Map([[claimsOf(linked).sub as string, now() + 5]]) });
    try {
      const response = await call({ host: 'wiki.test', headers: [API, ['cf-access-token', linked]] });
      expect(response.status).toBe(401);
      expect(response.reached).toBe(false);
    } finally {
      harness.setConfig({ userRevocations: new Map() });
    }
  });

  it('refuses a token issued in the same second as the revocation, not one issued a second later', async () => {
    const iat = now() - 10;
    const sameSecond = await appToken(harness, wiki, { iat });
    const later = await appToken(harness, wiki, { iat: iat + 1 });
    const sub = claimsOf(sameSecond).sub as string;
    const use = (token: string) => call({ host: 'wiki.test', headers: [API, ['cf-access-token', token]] });
    // Both verify and are cached before the revocation arrives: the cache must not outlive it.
    expect((await use(sameSecond)).status).toBe(200);
    expect((await use(later)).status).toBe(200);
    const index = harness.config.apps.indexOf(wiki);
    const revokedApps = [...harness.config.apps];
    revokedApps[index] = { ...wiki, tokensRevokedAt: iat };
    harness.setConfig({ apps: revokedApps });
    try {
      expect((await use(sameSecond)).status).toBe(401);
      expect((await use(later)).status).toBe(200);
    } finally {
      harness.setConfig({ apps });
    }
    harness.setConfig({ userRevocations: new Map([[sub, iat]]) });
    try {
      expect((await use(sameSecond)).status).toBe(401);
      expect((await use(later)).status).toBe(200);
    } finally {
      harness.setConfig({ userRevocations: new Map() });
    }
  });
});

describe('service tokens', () => {
  const creds = (token: ServiceTokenRecord, secret: string): [string, string][] => [
    ['CF-Access-Client-Id', token.clientId],
    ['CF-Access-Client-Secret', secret],
  ];

  it('lets a valid service token in with a service-token assertion', async () => {
    const response = await call({ host: 'wiki.test', headers: [API, ...creds(st, 's3cret')] });
    expect(response.status).toBe(200);
    const assertion = String(response.seen.headers['cf-access-jwt-assertion']);
    const { payload } = await verifyJwt(harness.gateway.gateway.keys, assertion, {
      issuer: harness.teamDomain,
      audience: wiki.aud,
    });
    expect(payload).toMatchObject({ type: 'app', aud: [wiki.aud], common_name: st.clientId, sub: '' });
    expect(payload.email).toBeUndefined();
    expect(response.seen.headers['cf-access-client-secret']).toBeUndefined();
    expect(response.seen.headers['cf-access-authenticated-user-email']).toBeUndefined();
    // Minted once per (credential, app), then reused.
    const again = await call({ host: 'wiki.test', headers: [API, ...creds(st, 's3cret')] });
    expect(again.seen.headers['cf-access-jwt-assertion']).toBe(assertion);
  });

  it('returns the service-token JWT as the app cookie outside strict mode; the cookie lasts while the token does', async () => {
    const first = await call({ host: 'wiki.test', headers: [API, ...creds(st, 's3cret')] });
    expect(first.status).toBe(200);
    const setCookie = String(first.headers['set-cookie']);
    const assertion = String(first.seen.headers['cf-access-jwt-assertion']);
    expect(setCookie).toContain(`CF_Authorization=${assertion};`);
    expect(setCookie).toContain('HttpOnly');
    // The cookie alone authenticates, with the same service-token identity.
    const cookie: [string, string] = ['cookie', `CF_Authorization=${assertion}`];
    const withCookie = await call({ host: 'wiki.test', headers: [API, cookie] });
    expect(withCookie.status).toBe(200);
    expect(withCookie.seen.headers['cf-access-jwt-assertion']).toBe(assertion);
    expect(withCookie.seen.headers.cookie).toBeUndefined();
    // Disabling (like deleting) the token ends the sessions it started.
    const off = { ...st, enabled: false };
    harness.setConfig({ serviceTokens: new Map([[st.clientId, off]]) });
    try {
      const refused = await call({ host: 'wiki.test', headers: [API, cookie] });
      expect(refused.status).toBe(401);
      expect(refused.reached).toBe(false);
    } finally {
      harness.setConfig({
        serviceTokens: new Map(
          [st, expired, disabled, rotated, rotatedLong].map((token) => [token.clientId, token]),
        ),
      });
    }
    // Strict mode issues no cookie.
    harness.setConfig({ org: { ...harness.config.org, strictServiceTokens: true } });
    try {
      const strict = await call({ host: 'wiki.test', headers: [API, ...creds(st, 's3cret')] });
      expect(strict.status).toBe(200);
      expect(strict.headers['set-cookie']).toBeUndefined();
    } finally {
      harness.setConfig({ org: { ...harness.config.org, strictServiceTokens: false } });
    }
  });

  it('refuses wrong secrets, expired and disabled tokens', async () => {
    for (const headers of [creds(st, 'wrong'), creds(expired, 's3cret'), creds(disabled, 's3cret')]) {
      const response = await call({ host: 'wiki.test', headers: [API, ...headers] });
      expect(response.status).toBe(401);
      expect(response.reached).toBe(false);
    }
  });

  it('honours the previous secret during the rotation grace, not after', async () => {
    expect((await call({ host: 'wiki.test', headers: [API, ...creds(rotated, 'new-secret')] })).status).toBe(
      200,
    );
    expect((await call({ host: 'wiki.test', headers: [API, ...creds(rotated, 'old-secret')] })).status).toBe(
      200,
    );
    expect(
      (await call({ host: 'wiki.test', headers: [API, ...creds(rotated, 'older-secret')] })).status,
    ).toBe(401);
  });

  it("reads the app's read_service_tokens_from_header JSON header", async () => {
    const json = JSON.stringify({ 'cf-access-client-id': st.clientId, 'cf-access-client-secret': 's3cret' });
    const response = await call({ host: 'svc.test', headers: [API, ['x-service-credentials', json]] });
    expect(response.status).toBe(200);
    expect(response.seen.headers['x-service-credentials']).toBeUndefined();
    expect(claimsOf(String(response.seen.headers['cf-access-jwt-assertion'])).common_name).toBe(st.clientId);
  });

  it('strict mode: bad or partial credentials 401, valid but not allowed 403, nothing else counts', async () => {
    harness.setConfig({ org: { ...harness.config.org, strictServiceTokens: true } });
    try {
      const bad = await call({ host: 'wiki.test', headers: [API, ...creds(st, 'wrong')] });
      expect(bad.status).toBe(401);
      const partial = await call({ host: 'wiki.test', headers: [API, ['CF-Access-Client-Id', st.clientId]] });
      expect(partial.status).toBe(401);
      const duplicate = await call({
        host: 'wiki.test',
        headers: [API, ...creds(st, 's3cret'), ['cf-access-client-id', st.clientId]],
      });
      expect(duplicate.status).toBe(401);
      const session = await appToken(harness, unlinked);
      const notAllowed = await call({
        host: 'unlinked.test',
        headers: [API, ...creds(st, 's3cret'), ['cf-access-token', session]],
      });
      expect(notAllowed.status).toBe(403);
      expect(bad.reached || partial.reached || duplicate.reached || notAllowed.reached).toBe(false);
      expect((await call({ host: 'wiki.test', headers: [API, ...creds(st, 's3cret')] })).status).toBe(200);
    } finally {
      harness.setConfig({ org: { ...harness.config.org, strictServiceTokens: false } });
    }
  });
});

describe('linked app tokens', () => {
  it("flow 1: A's app token in Cf-Access-Token or Bearer becomes a fresh token for B", async () => {
    const token = await appToken(harness, mcp, {}, 600);
    for (const header of [
      ['cf-access-token', token],
      ['authorization', `Bearer ${token}`],
    ] as [string, string][]) {
      const response = await call({ host: 'wiki.test', headers: [API, header] });
      expect(response.status).toBe(200);
      const assertion = String(response.seen.headers['cf-access-jwt-assertion']);
      const { payload } = await verifyJwt(harness.gateway.gateway.keys, assertion, {
        issuer: harness.teamDomain,
        audience: wiki.aud,
      });
      expect(payload).toMatchObject({
        aud: [wiki.aud],
        email: 'alice@example.com',
        sub: claimsOf(token).sub,
        identity_nonce: 'nonce-1',
        linked_app_uid: mcp.id,
      });
      expect(payload.exp).toBeLessThanOrEqual(claimsOf(token).exp as number);
      expect(response.seen.headers['cf-access-authenticated-user-email']).toBe('alice@example.com');
      expect(response.seen.headers['cf-access-token']).toBeUndefined();
      expect(response.seen.headers.authorization).toBeUndefined();
    }
  });

  it('flow 2: a SaaS access token (at+jwt) in Authorization: Bearer', async () => {
    const token = await saasAccessToken(harness, 'saas-client-1');
    const response = await call({ host: 'wiki.test', headers: [API, ['authorization', `Bearer ${token}`]] });
    expect(response.status).toBe(200);
    const assertion = claimsOf(String(response.seen.headers['cf-access-jwt-assertion']));
    expect(assertion).toMatchObject({ aud: [wiki.aud], email: 'alice@example.com', linked_app_uid: saas.id });
    // Issued for another SaaS client: no link.
    const other = await saasAccessToken(harness, 'other-client');
    const refused = await call({ host: 'wiki.test', headers: [API, ['authorization', `Bearer ${other}`]] });
    expect(refused.status).toBe(403);
    expect(refused.reached).toBe(false);
  });

  it('refuses a genuine token for app A at app B when B does not link A', async () => {
    const token = await appToken(harness, unlinked);
    const response = await call({ host: 'wiki.test', headers: [API, ['cf-access-token', token]] });
    expect(response.status).toBe(403);
    expect(response.reached).toBe(false);
    // And a cookie for another app is no session at all.
    const cookie = await call({
      host: 'wiki.test',
      headers: [BROWSER, ['cookie', `CF_Authorization=${token}`]],
    });
    expect(cookie.status).toBe(302);
  });
});

describe('Access endpoints on app hosts', () => {
  it('authorized sets the app cookie and redirects only within the host', async () => {
    const token = await appToken(harness, wiki);
    // The hand-off is bound to this browser's CF_AppSession cookie (src/keys/app-session.ts).
    const secret = 'a'.repeat(43);
    const bound = `app_session=${appSessionMac(appSessionMeta(secret), token)}`;
    const browserCookie: [string, string] = ['cookie', `CF_AppSession=${secret}`];
    const ok = await call({
      host: 'wiki.test',
      path: `/cdn-cgi/access/authorized?token=${token}&${bound}&redirect_url=${encodeURIComponent('/doc?a=1')}`,
      headers: [browserCookie],
    });
    expect(ok.status).toBe(302);
    expect(ok.headers.location).toBe('/doc?a=1');
    const cookie = ok.headers['set-cookie']![0]!;
    expect(cookie).toContain(`CF_Authorization=${token}`);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Lax');
    expect(cookie).toContain('Path=/');
    expect(cookie).not.toContain('Secure');
    for (const redirect of [
      'https://evil.example/',
      '//evil.example/',
      '/\\evil.example/',
      'javascript:alert(1)',
    ]) {
      const response = await call({
        host: 'wiki.test',
        path: `/cdn-cgi/access/authorized?token=${token}&${bound}&redirect_url=${encodeURIComponent(redirect)}`,
        headers: [browserCookie],
      });
      expect(response.headers.location).toBe('/');
    }
    const foreign = await appToken(harness, mcp);
    const refused = await call({ host: 'wiki.test', path: `/cdn-cgi/access/authorized?token=${foreign}` });
    expect(refused.status).toBe(401);
    expect(refused.headers['set-cookie']).toBeUndefined();
    expect(ok.reached || refused.reached).toBe(false);
  });

  it('get-identity returns the identity of the app token', async () => {
    const token = await appToken(harness, wiki);
    const response = await call({
      host: 'wiki.test',
      path: '/cdn-cgi/access/get-identity',
      headers: [['cookie', `CF_Authorization=${token}`]],
    });
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toMatchObject({
      email: 'alice@example.com',
      user_uuid: claimsOf(token).sub,
      geo: { country: 'NL' },
    });
    const anonymous = await call({ host: 'wiki.test', path: '/cdn-cgi/access/get-identity' });
    expect(anonymous.status).toBe(401);
  });

  it('logout clears the cookie and continues on the team domain', async () => {
    const response = await call({ host: 'wiki.test', path: '/cdn-cgi/access/logout' });
    expect(response.status).toBe(302);
    expect(response.headers.location).toBe(`${harness.teamDomain}/cdn-cgi/access/logout`);
    expect(response.headers['set-cookie']![0]).toMatch(/^CF_Authorization=; Path=\/; Max-Age=0/);
  });
});

describe('CORS', () => {
  it("answers preflights itself with the app's cors_headers", async () => {
    const response = await call({
      host: 'cors.test',
      method: 'OPTIONS',
      headers: [
        ['origin', 'https://spa.example.com'],
        ['access-control-request-method', 'POST'],
      ],
    });
    expect(response.status).toBe(204);
    expect(response.headers['access-control-allow-origin']).toBe('https://spa.example.com');
    expect(response.headers['access-control-allow-credentials']).toBe('true');
    expect(response.headers['access-control-allow-methods']).toBe('GET, POST');
    expect(response.headers['access-control-max-age']).toBe('600');
    const stranger = await call({
      host: 'cors.test',
      method: 'OPTIONS',
      headers: [
        ['origin', 'https://evil.example'],
        ['access-control-request-method', 'POST'],
      ],
    });
    expect(stranger.headers['access-control-allow-origin']).toBeUndefined();
    expect(response.reached || stranger.reached).toBe(false);
  });

  it('adds the CORS headers to ordinary responses for allowed origins, also to its own 401', async () => {
    const spa: [string, string] = ['origin', 'https://spa.example.com'];
    const token = await appToken(harness, cors);
    const ok = await call({ host: 'cors.test', headers: [API, spa, ['cf-access-token', token]] });
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe('https://spa.example.com');
    expect(ok.headers['access-control-allow-credentials']).toBe('true');
    expect(ok.headers.vary).toContain('Origin');
    const unauthenticated = await call({ host: 'cors.test', headers: [API, spa] });
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers['access-control-allow-origin']).toBe('https://spa.example.com');
    const stranger = await call({
      host: 'cors.test',
      headers: [API, ['origin', 'https://evil.example'], ['cf-access-token', token]],
    });
    expect(stranger.status).toBe(200);
    expect(stranger.headers['access-control-allow-origin']).toBeUndefined();
    // An app without cors_headers leaves the origin's answer alone.
    const plain = await call({ host: 'public.test', headers: [spa] });
    expect(plain.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('sends /cdn-cgi/access/login on an app host to the team login, back to a path of that host only', async () => {
    for (const [asked, expected] of [
      ['/docs?a=1', '/docs?a=1'],
      ['https://evil.example/', '/'],
      ['//evil.example', '/'],
    ]) {
      const response = await call({
        host: 'wiki.test',
        path: `/cdn-cgi/access/login?redirect_url=${encodeURIComponent(asked!)}`,
        headers: [BROWSER],
      });
      expect(response.status).toBe(302);
      const location = new URL(response.headers.location!);
      expect(`${location.origin}${location.pathname}`).toBe(
        `${harness.teamDomain}/cdn-cgi/access/login/wiki.test`,
      );
      expect(location.searchParams.get('kid')).toBe(wiki.aud);
      expect(location.searchParams.get('redirect_url')).toBe(expected);
      expect(response.reached).toBe(false);
    }
  });

  it('passes preflights to the origin unauthenticated with options_preflight_bypass', async () => {
    const response = await call({
      host: 'preflight.test',
      method: 'OPTIONS',
      headers: [
        ['origin', 'https://spa.example.com'],
        ['access-control-request-method', 'PUT'],
      ],
    });
    expect(response.status).toBe(200);
    expect(response.reached).toBe(true);
    // A plain OPTIONS is no preflight: it needs credentials.
    const plain = await call({ host: 'preflight.test', method: 'OPTIONS', headers: [API] });
    expect(plain.status).toBe(401);
  });
});
