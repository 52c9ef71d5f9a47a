// The protocol engine: panva's oidc-provider (OpenID Certified) configured from a ProviderSpec.
// A spec says everything that differs between kinds of issuers (an Access-for-SaaS app today;
// managed OAuth for self-hosted/MCP apps next): issuer, clients, scopes and claims, lifetimes,
// PKCE and refresh policy, how accounts are found. Everything they share lives here: storage on
// our store, signing with the account's RS256 key, RFC 9068 access tokens, code-only response
// types, refresh-token rotation, error rendering, and the interaction policy that sends every
// authorization through Gatehouse's own login and policy check.
import { createHmac, createPublicKey, type KeyObject, sign } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KeyRing } from '../keys/keyring.ts';
import type { MasterKey } from '../keys/master-key.ts';
import { secretMatchesHash } from '../keys/secrets.ts';
import type { Logger } from '../logging.ts';
import type { OidcStorage } from './adapter.ts';
import { deriveRefreshSuccessors, type RotatingProvider } from './refresh-succession.ts';

// oidc-provider ships no types; this is the part of its surface Gatehouse uses.
export interface OidcClientMetadata {
  client_id: string;
  /** Gatehouse passes the SHA-256 of the secret; see compareClientSecret below. */
  client_secret?: string;
  redirect_uris: string[];
  grant_types: string[];
  response_types: string[];
  token_endpoint_auth_method: 'client_secret_basic' | 'client_secret_post' | 'none';
  scope: string;
  [extra: string]: unknown;
}

export interface OidcClient {
  clientId: string;
  grantTypeAllowed(type: string): boolean;
}

/** The token models oidc-provider hands to findAccount / extraTokenClaims. */
export interface OidcToken {
  kind: string;
  accountId?: string;
  clientId?: string;
  grantId?: string;
  iat?: number;
  scope?: string;
}

export interface OidcAccount {
  accountId: string;
  claims(use: string, scope: string): Promise<Record<string, unknown>> | Record<string, unknown>;
}

export interface OidcContext {
  oidc: { client?: OidcClient; account?: OidcAccount; route?: string; params?: Record<string, unknown> };
  req: IncomingMessage;
}

export interface OidcGrant {
  jti?: string;
  addOIDCScope(scope: string): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}

export interface InteractionDetails {
  uid: string;
  grantId?: string;
  params: Record<string, string | undefined>;
  prompt: { name: string; reasons: string[] };
  session?: { accountId?: string };
}

export interface Provider {
  issuer: string;
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    options?: { mergeWithLastSubmission?: boolean },
  ): Promise<void>;
  Grant: {
    new (init: { accountId: string; clientId: string }): OidcGrant;
    find(id: string): Promise<OidcGrant | undefined>;
  };
  Client: { prototype: { compareClientSecret(this: { clientSecret: string }, actual: string): boolean } };
  RefreshToken: RotatingProvider['RefreshToken'];
  on(event: string, listener: (...args: unknown[]) => void): void;
  use(middleware: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): void;
}

interface KoaContext {
  status: number;
  body: unknown;
  oidc?: OidcContext['oidc'];
}

type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => Provider;
interface CheckConstructor {
  new (reason: string, description: string, check: (ctx: OidcContext) => boolean): unknown;
  REQUEST_PROMPT: boolean;
  NO_NEED_TO_PROMPT: boolean;
}
interface OidcLibrary {
  default: ProviderConstructor;
  interactionPolicy: {
    base(): { get(name: string): { checks: { add(check: unknown): void } } };
    Check: CheckConstructor;
  };
  errors: { InvalidTarget: new (description?: string) => Error };
  ExternalSigningKey: abstract new () => { kid: string; alg: string };
}
let loaded: OidcLibrary | undefined;

const RUNTIME_NOTICE = 'oidc-provider WARNING: Unsupported runtime';

/**
 * Loads oidc-provider once, before any provider is built (createServer awaits it). Its module
 * prints a console warning on Node 20 (stack.md §1: every flow we use was verified on Node 20);
 * the notice is caught here and logged once, structured, so `gatehouse` keeps stderr JSON-only
 * and commands that never build a provider do not pay for loading it.
 */
export async function loadOidcLibrary(logger: Logger): Promise<void> {
  if (loaded) return;
  const consoleWarn = console.warn;
  let notice: string | undefined;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].startsWith(RUNTIME_NOTICE)) notice = args[0];
    else consoleWarn(...args);
  };
  try {
    loaded = (await import('oidc-provider')) as unknown as OidcLibrary;
  } finally {
    console.warn = consoleWarn;
  }
  if (notice) {
    logger.info(
      { node: process.version },
      'oidc-provider recommends Node.js 22 LTS; the OIDC flows Gatehouse uses are tested on this runtime',
    );
  }
}

function library(): OidcLibrary {
  if (!loaded) throw new Error('loadOidcLibrary() must complete before an OIDC provider is built');
  return loaded;
}

export type IssuerKind = 'saas' | 'managed_oauth';

/** What one issuer is; built by a kind-specific function (src/oidc/saas.ts). */
export interface ProviderSpec {
  kind: IssuerKind;
  /** Storage namespace: the app's id. */
  namespace: string;
  /** Absolute issuer URL; its path is where the provider is mounted. */
  issuer: string;
  clients: OidcClientMetadata[];
  scopes: string[];
  /** Claim names released per scope. */
  claims: Record<string, string[]>;
  /** Lifetimes in seconds. */
  ttl: { accessToken: number; idToken: number; refreshToken: number };
  /** RFC 8707 resource every access token is bound to when the client names none. */
  defaultResource: string;
  /** The resource's `aud` and scopes; null refuses the resource (invalid_target). */
  resourceServer(resource: string, clientId: string): { audience: string; scope: string } | null;
  pkceRequired(clientId: string): boolean;
  issueRefreshToken(clientId: string): boolean;
  /** Finds the user; `token` is the code or refresh token being exchanged. undefined refuses it. */
  findAccount(ctx: OidcContext, sub: string, token?: OidcToken): Promise<OidcAccount | undefined>;
  /** Claims added to RFC 9068 access tokens (e.g. `email`). */
  accessTokenClaims(ctx: OidcContext, token: OidcToken): Promise<Record<string, unknown> | undefined>;
  /**
   * RFC 7662 answer for a JWT access token this issuer minted for `clientId` (oidc-provider
   * stores only opaque artefacts, so it answers `active: false` for them), or null.
   */
  introspectAccessToken(token: string, clientId: string): Promise<Record<string, unknown> | null>;
  /** Whether a token oidc-provider introspected as active is still so (revocations, …); default yes. */
  stillActive?(introspection: Record<string, unknown>): Promise<boolean>;
  /** Extra oidc-provider `features` a kind turns on (registration, CIMD, …). */
  features?: Record<string, unknown>;
}

export interface EngineDeps {
  /** Where provider failures are logged (never with request parameters). */
  logger?: Logger;
  keys: KeyRing;
  storage: OidcStorage;
  masterKey: MasterKey;
}

/** Paths under the issuer; Cloudflare names the first four (spec §2.2). */
export const ROUTES = {
  authorization: '/authorization',
  token: '/token',
  userinfo: '/userinfo',
  jwks: '/jwks',
  revocation: '/revoke',
  introspection: '/introspect',
} as const;

export const INTERACTION_PATH = '/interaction/';
/** RFC 6749 §10.5: codes are short-lived; at most 60 s (issue 7). */
export const AUTHORIZATION_CODE_TTL_SECONDS = 60;
const INTERACTION_TTL_SECONDS = 600;

/** Builds one oidc-provider instance for a spec, signing with the key ring's current key. */
export function buildProvider(spec: ProviderSpec, deps: EngineDeps): Provider {
  const issuerPath = new URL(spec.issuer).pathname;
  const { kid, key } = deps.keys.signingKey();
  const lib = library();
  const policy = lib.interactionPolicy.base();
  // Every authorization goes through our interaction, which checks the team-domain session and
  // the app's policies now; an oidc-provider session alone never yields a code (a user logged
  // out or blocked since must not get one). The check is satisfied by that interaction's result.
  policy
    .get('login')
    .checks.add(
      new lib.interactionPolicy.Check('gatehouse_access', 'Access login and policies are checked', (ctx) =>
        (ctx.oidc as { result?: { login?: unknown } }).result?.login
          ? lib.interactionPolicy.Check.NO_NEED_TO_PROMPT
          : lib.interactionPolicy.Check.REQUEST_PROMPT,
      ),
    );

  const provider = new lib.default(spec.issuer, {
    adapter: deps.storage.adapterFactory(spec.namespace),
    clients: spec.clients,
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],
    // Hybrid and implicit are not offered (the API refuses them): `code` only, which also keeps
    // them out of discovery (stack.md §3 gotcha 6).
    responseTypes: ['code'],
    scopes: spec.scopes,
    claims: spec.claims,
    // ID tokens carry the claims of the granted scopes, as Cloudflare's do (email, name, groups).
    conformIdTokenClaims: false,
    jwks: { keys: [rs256SigningKey(lib, kid, key)] },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256'],
      userinfoSigningAlgValues: ['RS256'],
      introspectionSigningAlgValues: ['RS256'],
      authorizationSigningAlgValues: ['RS256'],
      requestObjectSigningAlgValues: ['RS256'],
      clientAuthSigningAlgValues: ['RS256'],
    },
    cookies: {
      keys: cookieKeys(deps.masterKey),
      long: { signed: true, httpOnly: true, sameSite: 'lax' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
    },
    findAccount: (ctx: OidcContext, sub: string, token?: OidcToken) => spec.findAccount(ctx, sub, token),
    extraTokenClaims: (ctx: OidcContext, token: OidcToken) =>
      token.kind === 'AccessToken' ? spec.accessTokenClaims(ctx, token) : undefined,
    features: {
      // Signing through rs256SigningKey below; the ack pins the feature's version (a new one
      // makes oidc-provider refuse to start rather than change behaviour silently).
      externalSigningSupport: { enabled: true, ack: 'experimental-01' },
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => spec.defaultResource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: OidcContext, resource: string, client: OidcClient) => {
          const server = spec.resourceServer(resource, client.clientId);
          if (!server) throw new lib.errors.InvalidTarget();
          return {
            ...server,
            accessTokenTTL: spec.ttl.accessToken,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
      ...spec.features,
    },
    // PKCE is S256 only in oidc-provider 9 (`plain` is refused); required per client.
    pkce: { required: (_ctx: OidcContext, client: OidcClient) => spec.pkceRequired(client.clientId) },
    issueRefreshToken: async (_ctx: OidcContext, client: OidcClient) =>
      client.grantTypeAllowed('refresh_token') && spec.issueRefreshToken(client.clientId),
    // Refresh tokens live their own lifetime, not that of oidc-provider's session (unused).
    expiresWithSession: async () => false,
    rotateRefreshToken: true,
    routes: ROUTES,
    ttl: {
      AccessToken: spec.ttl.accessToken,
      AuthorizationCode: AUTHORIZATION_CODE_TTL_SECONDS,
      IdToken: spec.ttl.idToken,
      RefreshToken: spec.ttl.refreshToken,
      Grant: spec.ttl.refreshToken,
      Interaction: INTERACTION_TTL_SECONDS,
      Session: INTERACTION_TTL_SECONDS,
    },
    interactions: {
      url: (_ctx: OidcContext, interaction: { uid: string }) =>
        `${issuerPath}${INTERACTION_PATH}${interaction.uid}`,
      policy,
    },
    renderError: async (ctx: { type: string; body: string }, out: Record<string, string>) => {
      ctx.type = 'html';
      ctx.body = errorHtml(out.error ?? 'error', out.error_description ?? '');
    },
    allowOmittingSingleRegisteredRedirectUri: false,
  });
  // Client secrets are stored only as SHA-256 (decision 9), so the metadata carries the hash and
  // the comparison hashes the presented secret, in constant time.
  provider.Client.prototype.compareClientSecret = function (this: { clientSecret: string }, actual: string) {
    return typeof actual === 'string' && secretMatchesHash(actual, this.clientSecret);
  };
  // Concurrent refreshes of one token, on any node, share one successor (src/oidc/refresh-succession.ts).
  deriveRefreshSuccessors(provider, deps.masterKey);
  // Introspection runs oidc-provider's client authentication first; it then refuses JWTs
  // (`unsupported_token_type`: it keeps no record of them). Only for an authenticated client is
  // the JWT checked here, and only a token minted for that client is reported active. What
  // oidc-provider reports active (refresh tokens) is checked against revocations it cannot see.
  provider.use(async (ctx, next) => {
    await next();
    const oidc = ctx.oidc;
    if (oidc?.route !== 'introspection' || !oidc.client) return;
    const body = ctx.body as { error?: unknown; active?: unknown } | undefined;
    const token = oidc.params?.token;
    if (body?.error === 'unsupported_token_type' && typeof token === 'string') {
      ctx.status = 200;
      ctx.body = (await spec.introspectAccessToken(token, oidc.client.clientId)) ?? { active: false };
    } else if (
      body?.active === true &&
      spec.stillActive &&
      !(await spec.stillActive(body as Record<string, unknown>))
    ) {
      ctx.body = { active: false };
    }
  });
  // The client gets `server_error`; the log gets the error, never the request's parameters.
  provider.on('server_error', (_ctx, error) =>
    deps.logger?.error({ err: error, issuer: spec.issuer }, 'OIDC provider failure'),
  );
  return provider;
}

/**
 * The account's RS256 key as oidc-provider's ExternalSigningKey: JWTs (ID tokens, RFC 9068 access
 * tokens, two per token response) are signed by node:crypto's one-shot RSASSA-PKCS1-v1_5 SHA-256
 * instead of jose's WebCrypto path, which costs about 40 % more CPU per signature (an async job
 * handed to the thread pool, key checks per call); bench/README.md. The same key and algorithm
 * either way; the public half is what oidc-provider publishes and verifies with.
 */
function rs256SigningKey(
  lib: OidcLibrary,
  kid: string,
  key: KeyObject,
): InstanceType<OidcLibrary['ExternalSigningKey']> {
  const publicKey = createPublicKey(key);
  class AccountSigningKey extends lib.ExternalSigningKey {
    keyObject(): KeyObject {
      return publicKey;
    }
    sign(data: Buffer): Buffer {
      return sign('sha256', data, key);
    }
  }
  const signing = new AccountSigningKey();
  signing.kid = kid;
  signing.alg = 'RS256';
  return signing;
}

/** Cookie signing keys, derived from the master key so every node agrees on them. */
function cookieKeys(master: MasterKey): string[] {
  return [createHmac('sha256', master.key).update('gatehouse oidc-provider cookies').digest('base64url')];
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function errorHtml(error: string, description: string): string {
  const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (char) => ESCAPES[char]!);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign-in error</title></head><body><h1>Sign-in error</h1><p><code>${escapeHtml(error)}</code></p><p>${escapeHtml(description)}</p></body></html>`;
}
