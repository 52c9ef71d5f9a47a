// Flow 2 (Access for SaaS, the "MCP server as OIDC client" guide): this MCP server is the OAuth
// 2.1 authorization server toward its own MCP clients and an OIDC client of Gatehouse's per-app
// issuer `<team domain>/cdn-cgi/access/sso/oidc/<client_id>`. Each authorization sends the
// person to Gatehouse; the Gatehouse access and refresh tokens are kept per grant and never
// leave this server (MCP authorization: no token passthrough); MCP clients get our own opaque
// tokens, audience-bound to this server's /mcp (RFC 8707).
//
// Not the SDK's mcpAuthRouter: it is an Express router (mcp-authorization.md §2), and this
// server is plain node:http. The subset here is what MCP clients use: RFC 9728 + RFC 8414
// metadata, RFC 7591 registration of public clients, code + PKCE S256, refresh rotation,
// RFC 9207 `iss`.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import * as oidc from 'openid-client';
import { z } from 'zod';
import type { Fetch } from '../shared/connect.ts';
import { writeFileAtomic } from '../shared/files.ts';
import { HttpError, readForm, readJson, sendJson } from '../shared/http.ts';

export interface SaasAuthOptions {
  /** Where MCP clients reach this server, e.g. http://127.0.0.1:8084 (no trailing slash). */
  publicUrl: string;
  /** Gatehouse's issuer for this SaaS app: `<team domain>/cdn-cgi/access/sso/oidc/<client_id>`. */
  issuer: string;
  clientId: string;
  /** Only for a confidential client; the demo uses PKCE without a secret. */
  clientSecret?: string;
  /** JSON file for registered clients and grants (holds Gatehouse tokens: mode 0600). */
  dataFile: string;
  fetch: Fetch;
}

const ACCESS_TOKEN_SECONDS = 3600;
const REFRESH_TOKEN_SECONDS = 30 * 86_400;
const PENDING_MS = 10 * 60_000;
const CODE_MS = 60_000;
/**
 * Registration is open to anyone (RFC 7591 §3, as MCP clients expect), so what it can make us
 * keep is bounded: at most MAX_CLIENTS registrations; one that never led to a sign-in expires
 * after UNUSED_CLIENT_MS, and when the table is full the oldest unused one makes room. A
 * registration with a grant is never evicted by others registering: a flood of registrations
 * cannot sign anyone out. The request body and each field are bounded too (REGISTRATION_BYTES).
 */
export const MAX_CLIENTS = 1000;
export const UNUSED_CLIENT_MS = 24 * 3600_000;
const REGISTRATION_BYTES = 16 * 1024;
const TOKEN_REQUEST_BYTES = 16 * 1024;
/** OAuth sets no limit on `state`; clients send a few dozen characters. Held per sign-in. */
const MAX_STATE_LENGTH = 1024;
/** Sign-ins in progress (each lives 10 minutes): bounds what unauthenticated callers can make us hold. */
const MAX_PENDING = 10_000;

const clientSchema = z.object({
  client_id: z.string(),
  client_name: z.string().optional(),
  redirect_uris: z.array(z.string()),
  created_at: z.number(),
});
const grantSchema = z.object({
  id: z.string(),
  client_id: z.string(),
  email: z.string(),
  gatehouse: z.object({
    access_token: z.string(),
    refresh_token: z.string().nullable(),
    expires_at: z.number(),
  }),
});
const tokenSchema = z.object({
  grant: z.string(),
  kind: z.enum(['access', 'refresh']),
  expires_at: z.number(),
});
const stateSchema = z.object({
  clients: z.array(clientSchema),
  grants: z.array(grantSchema),
  // Keyed by SHA-256 of the token: a copy of the file does not give working MCP tokens.
  tokens: z.record(z.string(), tokenSchema),
});
type Grant = z.infer<typeof grantSchema>;

const registration = z.object({
  redirect_uris: z.array(z.string().max(1024)).min(1).max(5),
  client_name: z.string().max(200).optional(),
  token_endpoint_auth_method: z.literal('none').optional(),
});

interface Pending {
  client_id: string;
  redirect_uri: string;
  code_challenge: string;
  state: string | null;
  verifier: string;
  expires: number;
}
interface IssuedCode {
  grant: string;
  client_id: string;
  redirect_uri: string;
  code_challenge: string;
  expires: number;
}

export class SaasAuthorizationServer {
  private state: z.infer<typeof stateSchema>;
  private readonly pending = new Map<string, Pending>();
  private readonly codes = new Map<string, IssuedCode>();
  private gatehouse: Promise<oidc.Configuration> | null = null;
  readonly resource: string;

  constructor(private readonly options: SaasAuthOptions) {
    this.resource = `${options.publicUrl}/mcp`;
    this.state = existsSync(options.dataFile)
      ? stateSchema.parse(JSON.parse(readFileSync(options.dataFile, 'utf8')))
      : { clients: [], grants: [], tokens: {} };
  }

  /** Handles the OAuth endpoints; false when the path is not one of them. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<boolean> {
    const method = req.method ?? 'GET';
    switch (`${method} ${url.pathname}`) {
      case 'GET /.well-known/oauth-protected-resource':
      case 'GET /.well-known/oauth-protected-resource/mcp':
        sendJson(res, 200, {
          resource: this.resource,
          authorization_servers: [this.options.publicUrl],
          bearer_methods_supported: ['header'],
        });
        return true;
      case 'GET /.well-known/oauth-authorization-server':
        sendJson(res, 200, this.metadata());
        return true;
      case 'POST /register':
        await this.register(req, res);
        return true;
      case 'GET /authorize':
        await this.authorize(res, url);
        return true;
      case 'GET /callback':
        await this.callback(res, url);
        return true;
      case 'POST /token':
        await this.token(req, res);
        return true;
      default:
        return false;
    }
  }

  /** The 401 challenge for /mcp (RFC 6750 §3, RFC 9728 §5.1). */
  challenge(res: http.ServerResponse, error?: string): void {
    const metadata = `${this.options.publicUrl}/.well-known/oauth-protected-resource/mcp`;
    res.writeHead(401, {
      'www-authenticate': `Bearer ${error ? `error="${error}", ` : ''}resource_metadata="${metadata}"`,
      'content-type': 'application/json',
    });
    res.end(JSON.stringify({ error: error ?? 'unauthorized' }));
  }

  /**
   * The grant behind an MCP bearer token, with a Gatehouse access token that is still valid
   * (refreshed here when needed), or null: the client must authorize again.
   */
  async grantFor(authorization: string | undefined): Promise<Grant | null> {
    const token = /^Bearer ([A-Za-z0-9_-]{43})$/.exec(authorization ?? '')?.[1];
    if (!token) return null;
    const entry = this.liveToken(token, 'access');
    if (!entry) return null;
    const grant = this.state.grants.find((g) => g.id === entry.grant);
    if (!grant) return null;
    if (grant.gatehouse.expires_at > Date.now() + 30_000) return grant;
    if (!grant.gatehouse.refresh_token) return null;
    try {
      const tokens = await oidc.refreshTokenGrant(
        await this.gatehouseConfig(),
        grant.gatehouse.refresh_token,
      );
      grant.gatehouse = gatehouseTokens(tokens, grant.gatehouse.refresh_token);
      this.save();
      return grant;
    } catch {
      // Refused (revoked user or app, expired refresh token): the person signs in again.
      return null;
    }
  }

  private metadata() {
    const base = this.options.publicUrl;
    return {
      issuer: base,
      authorization_endpoint: `${base}/authorize`,
      token_endpoint: `${base}/token`,
      registration_endpoint: `${base}/register`,
      response_types_supported: ['code'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none'],
      scopes_supported: ['mcp'],
      authorization_response_iss_parameter_supported: true,
    };
  }

  private async register(req: http.IncomingMessage, res: http.ServerResponse) {
    const parsed = registration.safeParse(await readJson(req, REGISTRATION_BYTES));
    if (!parsed.success) return sendJson(res, 400, { error: 'invalid_client_metadata' });
    const bad = parsed.data.redirect_uris.find((uri) => !acceptableRedirect(uri));
    if (bad) {
      return sendJson(res, 400, {
        error: 'invalid_redirect_uri',
        error_description: `${bad}: use https, or http on a loopback host`,
      });
    }
    if (!this.makeRoomForClient()) {
      return sendJson(res, 503, {
        error: 'temporarily_unavailable',
        error_description: 'too many registered clients; try again later',
      });
    }
    const client = {
      client_id: randomToken(),
      redirect_uris: parsed.data.redirect_uris,
      created_at: Date.now(),
      ...(parsed.data.client_name && { client_name: parsed.data.client_name }),
    };
    this.state.clients.push(client);
    this.save();
    sendJson(res, 201, {
      ...client,
      client_id_issued_at: Math.floor(client.created_at / 1000),
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    });
  }

  /** Drops expired unused registrations, then the oldest unused one if still full; false when all are in use. */
  private makeRoomForClient(): boolean {
    const used = new Set(this.state.grants.map((g) => g.client_id));
    const cutoff = Date.now() - UNUSED_CLIENT_MS;
    this.state.clients = this.state.clients.filter((c) => used.has(c.client_id) || c.created_at >= cutoff);
    if (this.state.clients.length < MAX_CLIENTS) return true;
    const oldestUnused = this.state.clients.findIndex((c) => !used.has(c.client_id));
    if (oldestUnused === -1) return false;
    this.state.clients.splice(oldestUnused, 1);
    return true;
  }

  private async authorize(res: http.ServerResponse, url: URL) {
    const q = url.searchParams;
    const client = this.state.clients.find((c) => c.client_id === q.get('client_id'));
    const redirectUri = q.get('redirect_uri') ?? '';
    // Until the redirect URI is known to be the client's, errors go to the person, not to it.
    if (!client) throw new HttpError(400, 'unknown client_id: register the client first');
    if (!client.redirect_uris.includes(redirectUri)) {
      throw new HttpError(400, 'redirect_uri is not one the client registered');
    }
    const clientState = q.get('state');
    // A `state` too long to keep is not echoed back either.
    if (clientState && clientState.length > MAX_STATE_LENGTH) {
      return redirectTo(res, redirectUri, { error: 'invalid_request' }, this.options.publicUrl);
    }
    const fail = (error: string) =>
      redirectTo(res, redirectUri, { error, state: clientState }, this.options.publicUrl);
    if (q.get('response_type') !== 'code') return fail('unsupported_response_type');
    const challenge = q.get('code_challenge') ?? '';
    if (q.get('code_challenge_method') !== 'S256' || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
      return fail('invalid_request');
    }
    const resource = q.get('resource');
    if (resource !== null && resource.replace(/\/$/, '') !== this.resource) return fail('invalid_target');

    const config = await this.gatehouseConfig();
    const verifier = oidc.randomPKCECodeVerifier();
    const state = randomToken();
    this.sweep();
    if (this.pending.size >= MAX_PENDING) {
      throw new HttpError(503, 'too many sign-ins in progress; try again in a few minutes');
    }
    this.pending.set(state, {
      client_id: client.client_id,
      redirect_uri: redirectUri,
      code_challenge: challenge,
      state: clientState,
      verifier,
      expires: Date.now() + PENDING_MS,
    });
    const target = oidc.buildAuthorizationUrl(config, {
      redirect_uri: `${this.options.publicUrl}/callback`,
      scope: 'openid email profile',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    });
    res.writeHead(302, { location: target.href, 'cache-control': 'no-store' });
    res.end();
  }

  private async callback(res: http.ServerResponse, url: URL) {
    const state = url.searchParams.get('state') ?? '';
    const pending = this.pending.get(state);
    this.pending.delete(state);
    if (!pending || pending.expires < Date.now()) {
      throw new HttpError(
        400,
        'this sign-in link has expired or was already used; start again from your MCP client',
      );
    }
    const back = (params: Record<string, string | null>) =>
      redirectTo(res, pending.redirect_uri, { ...params, state: pending.state }, this.options.publicUrl);
    if (url.searchParams.has('error'))
      return back({ error: url.searchParams.get('error') ?? 'access_denied' });
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      // The redirect_uri sent to the token endpoint is derived from this URL: our public one.
      const callback = new URL(`${this.options.publicUrl}/callback${url.search}`);
      tokens = await oidc.authorizationCodeGrant(await this.gatehouseConfig(), callback, {
        pkceCodeVerifier: pending.verifier,
        expectedState: state,
      });
    } catch {
      return back({ error: 'access_denied' });
    }
    const email = tokens.claims()?.email;
    if (typeof email !== 'string') return back({ error: 'access_denied' });
    const grant: Grant = {
      id: randomToken(),
      client_id: pending.client_id,
      email: email.toLowerCase(),
      gatehouse: gatehouseTokens(tokens, null),
    };
    this.state.grants.push(grant);
    this.save();
    const code = randomToken();
    this.codes.set(code, {
      grant: grant.id,
      client_id: pending.client_id,
      redirect_uri: pending.redirect_uri,
      code_challenge: pending.code_challenge,
      expires: Date.now() + CODE_MS,
    });
    back({ code });
  }

  private async token(req: http.IncomingMessage, res: http.ServerResponse) {
    // RFC 6749 §3.2: the token request is a form post.
    const form = await readForm(req, TOKEN_REQUEST_BYTES);
    const refuse = (error: string, status = 400) => sendJson(res, status, { error });
    const resource = form.get('resource');
    if (resource !== null && resource.replace(/\/$/, '') !== this.resource) return refuse('invalid_target');
    const grantType = form.get('grant_type');
    if (grantType === 'authorization_code') {
      const code = form.get('code') ?? '';
      const issued = this.codes.get(code);
      this.codes.delete(code);
      if (
        !issued ||
        issued.expires < Date.now() ||
        issued.client_id !== form.get('client_id') ||
        issued.redirect_uri !== form.get('redirect_uri') ||
        !sameText(issued.code_challenge, s256(form.get('code_verifier') ?? ''))
      ) {
        return refuse('invalid_grant');
      }
      return sendJson(res, 200, this.issue(issued.grant));
    }
    if (grantType === 'refresh_token') {
      const presented = form.get('refresh_token') ?? '';
      const entry = this.liveToken(presented, 'refresh');
      const grant = entry && this.state.grants.find((g) => g.id === entry.grant);
      if (!grant || grant.client_id !== form.get('client_id')) {
        return refuse('invalid_grant');
      }
      // Rotation (OAuth 2.1 §4.3.1): the presented refresh token is spent.
      delete this.state.tokens[digest(presented)];
      return sendJson(res, 200, this.issue(grant.id));
    }
    return refuse('unsupported_grant_type');
  }

  private liveToken(token: string, kind: 'access' | 'refresh') {
    const entry = this.state.tokens[digest(token)];
    return entry && entry.kind === kind && entry.expires_at >= Date.now() ? entry : null;
  }

  private issue(grant: string) {
    const access = randomToken();
    const refresh = randomToken();
    const now = Date.now();
    this.state.tokens[digest(access)] = {
      grant,
      kind: 'access',
      expires_at: now + ACCESS_TOKEN_SECONDS * 1000,
    };
    this.state.tokens[digest(refresh)] = {
      grant,
      kind: 'refresh',
      expires_at: now + REFRESH_TOKEN_SECONDS * 1000,
    };
    for (const [key, entry] of Object.entries(this.state.tokens))
      if (entry.expires_at < now) delete this.state.tokens[key];
    this.save();
    return {
      access_token: access,
      token_type: 'Bearer',
      expires_in: ACCESS_TOKEN_SECONDS,
      refresh_token: refresh,
      scope: 'mcp',
    };
  }

  private gatehouseConfig(): Promise<oidc.Configuration> {
    // Discovered lazily and again after a failure: Gatehouse may start after this server.
    this.gatehouse ??= oidc
      .discovery(
        new URL(this.options.issuer),
        this.options.clientId,
        undefined,
        this.options.clientSecret ? oidc.ClientSecretPost(this.options.clientSecret) : oidc.None(),
        {
          [oidc.customFetch]: this.options.fetch,
          ...(this.options.issuer.startsWith('http:') && { execute: [oidc.allowInsecureRequests] }),
        },
      )
      .catch((error: unknown) => {
        this.gatehouse = null;
        throw new HttpError(502, `cannot reach Gatehouse's sign-in (${(error as Error).message})`);
      });
    return this.gatehouse;
  }

  private sweep() {
    const now = Date.now();
    for (const [key, value] of this.pending) if (value.expires < now) this.pending.delete(key);
    for (const [key, value] of this.codes) if (value.expires < now) this.codes.delete(key);
  }

  private save() {
    writeFileAtomic(this.options.dataFile, JSON.stringify(this.state));
  }
}

function gatehouseTokens(
  tokens: oidc.TokenEndpointResponse,
  previousRefresh: string | null,
): Grant['gatehouse'] {
  return {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token ?? previousRefresh,
    expires_at: Date.now() + (tokens.expires_in ?? 300) * 1000,
  };
}

function redirectTo(
  res: http.ServerResponse,
  redirectUri: string,
  params: Record<string, string | null>,
  issuer: string,
) {
  const target = new URL(redirectUri);
  for (const [key, value] of Object.entries(params)) if (value !== null) target.searchParams.set(key, value);
  // RFC 9207: lets the client detect a mix-up between authorization servers.
  target.searchParams.set('iss', issuer);
  res.writeHead(302, { location: target.href, 'cache-control': 'no-store' });
  res.end();
}

/**
 * https anywhere, http only on loopback (RFC 8252 §7.3, §8.3); no fragment (RFC 6749 §3.1.2),
 * no credentials, no other scheme (javascript:, data:, custom). Whitespace and control
 * characters, which the URL parser would strip or encode, are refused: the URI we redirect to
 * must be the one registered, and /authorize compares it exactly.
 */
function acceptableRedirect(uri: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses.
  if (/[\s\x00-\x1f\x7f]/.test(uri) || !URL.canParse(uri)) return false;
  const url = new URL(uri);
  if (uri.includes('#') || url.username || url.password) return false;
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
}

function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

function digest(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
