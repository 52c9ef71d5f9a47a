// A running gateway with an all-powerful management token, the official SDK pointed at it, and
// a raw HTTP helper for what the SDK would not send (malformed bodies, missing tokens).
import Cloudflare from 'cloudflare';
import { createApiToken } from '../../src/api/api-tokens.ts';
import type { PermissionGroup } from '../../src/api/permissions.ts';
import type { Database } from '../../src/store/schema.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';

export interface ApiResponse {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary envelope fields.
  body: any;
  headers: Headers;
}

export interface TestApi {
  gateway: TestGateway;
  accountId: string;
  /** Token with every Access write permission. */
  secret: string;
  client: Cloudflare;
  /** `${url}/client/v4/accounts/${accountId}/access` */
  access: string;
  tokenWith(permissions: PermissionGroup[]): Promise<string>;
  /** Sends JSON (or `raw` as is) with the admin token unless `token` is given (null: none). */
  request(
    method: string,
    url: string,
    options?: {
      json?: unknown;
      raw?: string | Buffer;
      token?: string | null;
      headers?: Record<string, string>;
    },
  ): Promise<ApiResponse>;
  close(): Promise<void>;
}

export async function startTestApi(kind: 'sqlite' | 'postgres'): Promise<TestApi> {
  const gateway = await startTestGateway({ kind });
  const accountId = gateway.gateway.account.accountId;
  const tokenWith = async (permissions: PermissionGroup[]) =>
    (await createApiToken(gateway.gateway.repos.apiTokens, { accountId, name: 'test', permissions })).secret;
  const secret = await tokenWith([
    'Access: Apps and Policies Write',
    'Access: Organizations, Identity Providers, and Groups Write',
  ]);
  return {
    gateway,
    accountId,
    secret,
    client: new Cloudflare({ apiToken: secret, baseURL: `${gateway.url}/client/v4`, maxRetries: 0 }),
    access: `${gateway.url}/client/v4/accounts/${accountId}/access`,
    tokenWith,
    async request(method, url, options = {}) {
      const token = options.token === undefined ? secret : options.token;
      const headers: Record<string, string> = { ...options.headers };
      if (token !== null) headers.authorization = `Bearer ${token}`;
      let body: string | Buffer | undefined;
      if (options.raw !== undefined) body = options.raw;
      else if (options.json !== undefined) body = JSON.stringify(options.json);
      if (body !== undefined) headers['content-type'] ??= 'application/json';
      const response = await fetch(url, { method, headers, body });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null, headers: response.headers };
    },
    close: () => gateway.close(),
  };
}

/** Row counts of `tables`, compared before and after failing requests: nothing may be written. */
export async function rowCounts(
  api: TestApi,
  tables: readonly (keyof Database)[],
): Promise<Record<string, number>> {
  const db = api.gateway.gateway.store.db;
  const result: Record<string, number> = {};
  for (const table of tables) {
    const row = await db
      .selectFrom(table)
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirstOrThrow();
    result[table] = Number(row.n);
  }
  return result;
}

/** A self-hosted app body with the given hostname. */
export function selfHostedApp(domain: string, extra: Record<string, unknown> = {}) {
  return { type: 'self_hosted', name: domain, domain, ...extra };
}

/** An upstream OIDC identity provider's config in Cloudflare's shape (nothing listens there). */
export function oidcIdpConfig(clientId: string) {
  return {
    client_id: clientId,
    client_secret: 'oidc-client-secret-value',
    auth_url: 'https://idp.example.com/authorize',
    token_url: 'https://idp.example.com/token',
    certs_url: 'https://idp.example.com/jwks',
    scopes: ['openid', 'email'],
    claims: ['groups'],
    email_claim_name: 'email',
  };
}

/** An OIDC SaaS app body in the shape of the MCP guide (spec/stack.md §2). */
export function saasApp(name: string) {
  return {
    type: 'saas',
    name,
    saas_app: {
      auth_type: 'oidc',
      redirect_uris: ['https://mcp.example.com/callback'],
      grant_types: ['authorization_code_with_pkce', 'refresh_tokens'],
      scopes: ['openid', 'email', 'profile'],
      app_launcher_url: 'https://mcp.example.com',
      access_token_lifetime: '5m',
      allow_pkce_without_client_secret: true,
      refresh_token_options: { lifetime: '30d' },
    },
  };
}
