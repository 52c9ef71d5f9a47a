// A gateway with the team-domain login, a real SMTP server receiving the PINs, the management
// API to create apps, policies and identity providers, an upstream OpenID Provider, and the
// steps a browser on the wire (test/support/browser.ts) takes through the login.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Provider from 'oidc-provider';
import { SMTPServer } from 'smtp-server';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { APP_SESSION_COOKIE, appSessionMeta } from '../../src/keys/app-session.ts';
import { verifyJwt } from '../../src/keys/jwt.ts';
import type { LoginOptions } from '../../src/login/plugin.ts';
import type { Browser } from '../support/browser.ts';
import { tempDir } from '../support/databases.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { freePort } from '../support/ports.ts';

export interface Mailbox {
  url: string;
  /** Resolves with the next PIN mailed to `to`. */
  nextPin(to: string): Promise<string>;
  sent: { to: string; body: string }[];
  close(): Promise<void>;
}

export async function startMailbox(): Promise<Mailbox> {
  const waiting = new Map<string, ((pin: string) => void)[]>();
  const sent: { to: string; body: string }[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, callback) {
      let body = '';
      stream.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8');
      });
      stream.on('end', () => {
        for (const rcpt of session.envelope.rcptTo) {
          const to = rcpt.address.toLowerCase();
          sent.push({ to, body });
          const pin = /login code is (\d{6})/.exec(body)?.[1];
          if (pin) waiting.get(to)?.shift()?.(pin);
        }
        callback();
      });
    },
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `smtp://127.0.0.1:${port}`,
    sent,
    nextPin: (to) =>
      new Promise((resolve) => {
        const list = waiting.get(to.toLowerCase()) ?? [];
        list.push(resolve);
        waiting.set(to.toLowerCase(), list);
      }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export interface LoginHarness {
  gateway: TestGateway;
  url: string;
  port: number;
  mailbox: Mailbox;
  /** The management API under `/client/v4/accounts/<id>/access`. */
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary envelope fields.
  api(method: string, path: string, json?: unknown): Promise<{ status: number; body: any }>;
  /** The management API under `/client/v4/accounts/<id>` (tunnel ingress). */
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary envelope fields.
  accountApi(method: string, path: string, json?: unknown): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

export async function startLoginHarness(
  options: { login?: LoginOptions; server?: Parameters<typeof startTestGateway>[0] } = {},
): Promise<LoginHarness> {
  const mailbox = await startMailbox();
  // smtp has no flag or environment variable: it comes from a config file, as in production.
  const configDir = tempDir('gatehouse-login-');
  const config = path.join(configDir.dir, 'gatehouse.json');
  writeFileSync(config, JSON.stringify({ smtp: { url: mailbox.url, from: 'access@gatehouse.test' } }));
  const gateway = await startTestGateway({
    ...options.server,
    settings: { ...options.server?.settings, config },
    server: { ...options.server?.server, ...(options.login && { login: options.login }) },
  });
  const accountId = gateway.gateway.account.accountId;
  const secret = (
    await createApiToken(gateway.gateway.repos.apiTokens, {
      accountId,
      name: 'login-test',
      permissions: [
        'Access: Apps and Policies Write',
        'Access: Organizations, Identity Providers, and Groups Write',
        'Access: Service Tokens Write',
        'Cloudflare Tunnel Write',
      ],
    })
  ).secret;
  async function accountApi(method: string, path: string, json?: unknown) {
    const response = await fetch(`${gateway.url}/client/v4/accounts/${accountId}${path}`, {
      method,
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      ...(json !== undefined && { body: JSON.stringify(json) }),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  }
  return {
    gateway,
    url: gateway.url,
    port: Number(new URL(gateway.url).port),
    mailbox,
    api: (method, path, json) => accountApi(method, `/access${path}`, json),
    accountApi,
    async close() {
      await gateway.close();
      await mailbox.close();
      configDir.cleanup();
    },
  };
}

/** The login tests' usual policy: anyone with an example.com address. */
export const STAFF_POLICY = {
  name: 'staff',
  decision: 'allow',
  include: [{ email_domain: { domain: 'example.com' } }],
};

/** Creates the account's one-time PIN identity provider; returns its id. */
export async function createPinIdp(h: LoginHarness): Promise<string> {
  const created = await h.api('POST', '/identity_providers', { name: 'PIN', type: 'onetimepin', config: {} });
  if (created.status !== 201) throw new Error(`PIN IdP: ${created.status} ${JSON.stringify(created.body)}`);
  return created.body.result.id;
}

/** Creates a self-hosted app at `domain`, for STAFF_POLICY unless `fields` say otherwise. */
export async function createSelfHostedApp(
  h: LoginHarness,
  domain: string,
  fields: Record<string, unknown> = {},
): Promise<{ id: string; aud: string }> {
  const created = await h.api('POST', '/apps', {
    type: 'self_hosted',
    name: domain,
    domain,
    policies: [STAFF_POLICY],
    ...fields,
  });
  if (created.status !== 201)
    throw new Error(`app ${domain}: ${created.status} ${JSON.stringify(created.body)}`);
  return created.body.result;
}

/**
 * Gives `browser` a CF_AppSession cookie on `appHost`, as the app host's redirect to the login
 * does, and returns the `meta` that redirect would send (src/keys/app-session.ts).
 */
export function appSession(browser: Browser, appHost: string): string {
  const jar = browser.jar.get(appHost) ?? new Map<string, string>();
  const secret = jar.get(APP_SESSION_COOKIE) ?? randomBytes(32).toString('base64url');
  jar.set(APP_SESSION_COOKIE, secret);
  browser.jar.set(appHost, jar);
  return appSessionMeta(secret);
}

/** The authentication log's rows (spec §6) for `email`, in the order they were written. */
export function accessLog(h: LoginHarness, email: string) {
  return h.gateway.gateway.store.db
    .selectFrom('access_requests')
    .selectAll()
    .where('user_email', '=', email)
    .execute();
}

/** The app token a hand-off URL carries, verified as the team domain's (for app `aud` if given). */
export function verifyHandOff(h: LoginHarness, handOff: string | URL, aud?: string) {
  const token = new URL(handOff).searchParams.get('token') ?? '';
  return verifyJwt(h.gateway.gateway.keys, token, {
    issuer: h.url,
    ...(aud !== undefined && { audience: aud }),
  });
}

export function formField(html: string, name: string): string {
  const match = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!match) throw new Error(`no field ${name} in page`);
  return match[1]!;
}

/** Every `value` of hidden `idp` fields on the picker. */
export function idpChoices(html: string): string[] {
  return [...html.matchAll(/name="idp" value="([^"]*)"/g)].map((m) => m[1]!);
}

/** Routes `hostname` to `service` through the built-in tunnel's ingress, as an operator would. */
export async function routeHost(h: LoginHarness, hostname: string, service: string): Promise<void> {
  const tunnels = await h.accountApi('GET', '/cfd_tunnel');
  if (tunnels.status !== 200) throw new Error(`cfd_tunnel: ${tunnels.status}`);
  const tunnelId = tunnels.body.result[0].id as string;
  const current = await h.accountApi('GET', `/cfd_tunnel/${tunnelId}/configurations`);
  const rules = ((current.body.result?.config?.ingress ?? []) as { hostname?: string }[]).filter(
    (rule) => rule.hostname !== undefined && rule.hostname !== hostname,
  );
  const put = await h.accountApi('PUT', `/cfd_tunnel/${tunnelId}/configurations`, {
    config: { ingress: [...rules, { hostname, service }, { service: 'http_status:404' }] },
  });
  if (put.status !== 200) throw new Error(`ingress: ${put.status} ${JSON.stringify(put.body)}`);
  await h.gateway.gateway.snapshot.refresh();
}

/**
 * An upstream OpenID Provider (panva's oidc-provider) at `issuer` whose one client is the
 * team domain's generic `oidc` IdP (client `gatehouse`, secret `upstream-secret`, PKCE); each
 * account `id` signs in as `id@example.com` with the claims `claimsOf(id)` adds.
 */
export function upstreamProvider(
  h: LoginHarness,
  issuer: string,
  options: { claims: Record<string, string[]>; claimsOf(id: string): Record<string, unknown> },
): Provider {
  return new Provider(issuer, {
    clients: [
      {
        client_id: 'gatehouse',
        client_secret: 'upstream-secret',
        redirect_uris: [`${h.url}/cdn-cgi/access/callback`],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    pkce: { required: () => true },
    // Cloudflare reads the email from the ID token (`email_claim_name`), not from userinfo.
    conformIdTokenClaims: false,
    claims: options.claims,
    findAccount: async (_ctx: unknown, id: string) => ({
      accountId: id,
      claims: async () => ({ sub: id, email: `${id}@example.com`, ...options.claimsOf(id) }),
    }),
  });
}

/**
 * Drives oidc-provider's development login and consent pages from its authorization URL until
 * it redirects back to the team domain's callback; returns that callback URL.
 */
export async function driveUpstream(
  browser: Browser,
  authorizationUrl: string,
  teamDomain: string,
  account: string,
): Promise<string> {
  let location = authorizationUrl;
  for (let step = 0; step < 12; step++) {
    if (location.startsWith(`${teamDomain}/cdn-cgi/access/callback`)) return location;
    const url = new URL(location);
    let page = await browser.request(url.href);
    if (page.status === 200 && page.text.includes('name="login"')) {
      page = await browser.request(new URL(/action="([^"]+)"/.exec(page.text)![1]!, url).href, {
        form: { prompt: 'login', login: account, password: 'x' },
      });
    } else if (page.status === 200 && page.text.includes('name="prompt" value="consent"')) {
      page = await browser.request(new URL(/action="([^"]+)"/.exec(page.text)![1]!, url).href, {
        form: { prompt: 'consent' },
      });
    }
    if (!page.location) throw new Error(`upstream step ${step}: ${page.status} ${page.text.slice(0, 600)}`);
    location = new URL(page.location, url).href;
  }
  throw new Error('the upstream login did not come back');
}
