// Access for SaaS on the team domain: routes `/cdn-cgi/access/sso/oidc/<client_id>/…` and the
// RFC 8414 path-inserted metadata URL to the app's provider. Providers are built lazily from the
// live snapshot and rebuilt when the app row or the signing key changes (about 1 ms each,
// stack.md §3). oidc-provider is Koa-based: it is handed the raw node request with
// `originalUrl` set, from which it derives its mount path.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Gateway } from '../gateway.ts';
import { createCountrySource } from '../geo/country.ts';
import type { Logger } from '../logging.ts';
import type { OrgSessions } from '../login/org-session.ts';
import type { IdentityDecider } from '../policy-external/identity-decision.ts';
import { bearerToken, verifyIssuedAccessToken } from './access-tokens.ts';
import { OidcStorage } from './adapter.ts';
import { claimsByScope, userClaims } from './claims.ts';
import { buildProvider, INTERACTION_PATH, type Provider, ROUTES } from './engine.ts';
import { handleInteraction } from './interaction.ts';
import {
  rememberedLogin,
  type SaasEntry,
  saasIssuer,
  saasProviderSpec,
  unitDurationSeconds,
} from './saas.ts';

export const SAAS_OIDC_PREFIX = '/cdn-cgi/access/sso/oidc/';
/** RFC 8414 §3.1: the well-known segment inserted before the issuer's path. */
const PATH_INSERTED_METADATA = '/.well-known/oauth-authorization-server';
const CLIENT_ID = /^[A-Za-z0-9._~-]{1,128}$/;
const INTERACTION_UID = /^[A-Za-z0-9_-]{1,64}$/;

interface Built {
  key: string;
  provider: Provider;
  /** Koa composes its middleware on every callback() call: done once per provider. */
  handler: (req: IncomingMessage, res: ServerResponse) => void;
}

export class SaasOidcService {
  private readonly providers = new Map<string, Built>();
  private readonly storage: OidcStorage;
  private readonly unsubscribe: (() => void)[] = [];

  /** `decide`: identity-time decisions for authorizations and refreshes, external evaluation included. */
  constructor(
    private readonly gateway: Gateway,
    private readonly orgSessions: OrgSessions,
    private readonly logger: Logger,
    private readonly decide: IdentityDecider,
  ) {
    this.storage = new OidcStorage(gateway.store, gateway.account.accountId);
    // A new signing key means new providers; a removed app's provider is dropped.
    this.unsubscribe.push(gateway.keys.onChange(() => this.providers.clear()));
    this.unsubscribe.push(
      gateway.snapshot.onRebuild((snapshot) => {
        for (const clientId of this.providers.keys()) {
          if (!snapshot.saasAppsByClientId.has(clientId)) this.providers.delete(clientId);
        }
      }),
    );
  }

  close(): void {
    for (const stop of this.unsubscribe) stop();
    this.providers.clear();
  }

  /** Handles the request when its path is one of ours; false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const path = queryAt === -1 ? url : url.slice(0, queryAt);
    const query = queryAt === -1 ? '' : url.slice(queryAt);
    let clientId: string;
    let rest: string;
    if (path.startsWith(SAAS_OIDC_PREFIX)) {
      const tail = path.slice(SAAS_OIDC_PREFIX.length);
      const slash = tail.indexOf('/');
      clientId = slash === -1 ? tail : tail.slice(0, slash);
      rest = slash === -1 ? '' : tail.slice(slash);
      // The same document at `<issuer>/.well-known/oauth-authorization-server` (RFC 8414 §3).
      if (rest === PATH_INSERTED_METADATA) rest = '/.well-known/openid-configuration';
    } else if (path.startsWith(`${PATH_INSERTED_METADATA}${SAAS_OIDC_PREFIX}`)) {
      clientId = path.slice(PATH_INSERTED_METADATA.length + SAAS_OIDC_PREFIX.length);
      rest = '/.well-known/openid-configuration';
    } else {
      return false;
    }
    this.dispatch(req, res, clientId, rest, query).catch((error) => {
      this.logger.error({ err: error }, 'OIDC request failed');
      if (!res.headersSent) json(res, 500, { error: 'server_error', error_description: 'internal error' });
      else res.destroy();
    });
    return true;
  }

  private async dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    clientId: string,
    rest: string,
    query: string,
  ): Promise<void> {
    const entry = CLIENT_ID.test(clientId)
      ? this.gateway.snapshot.current().saasAppsByClientId.get(clientId)
      : undefined;
    if (!entry) return json(res, 404, { error: 'invalid_client', error_description: 'no such application' });
    const built = this.builtFor(entry);
    if (!built) {
      return json(res, 503, {
        error: 'temporarily_unavailable',
        error_description: 'the application’s OIDC configuration cannot be used; check its saas_app',
      });
    }
    if (rest === ROUTES.jwks) {
      // Current and previous key (decision 8), so tokens signed before a rotation still verify.
      return json(res, 200, { keys: this.gateway.keys.certs().keys }, 'public, max-age=300');
    }
    if (rest === ROUTES.userinfo) return this.userinfo(req, res, entry);
    if (rest.startsWith(INTERACTION_PATH)) {
      const uid = rest.slice(INTERACTION_PATH.length);
      if (!INTERACTION_UID.test(uid) || (req.method !== 'GET' && req.method !== 'HEAD')) {
        return json(res, 400, { error: 'invalid_request' });
      }
      return handleInteraction(built.provider, entry, uid, req, res, {
        orgSessions: this.orgSessions,
        country: createCountrySource(this.gateway.settings),
        decide: this.decide,
        storage: this.storage,
        rememberSeconds: unitDurationSeconds(entry.app.config.saas_app.refresh_token_options.lifetime),
      });
    }
    const mount = new URL(built.provider.issuer).pathname;
    (req as IncomingMessage & { originalUrl?: string }).originalUrl = `${mount}${rest}${query}`;
    req.url = `${rest || '/'}${query}`;
    built.handler(req, res);
  }

  /** The provider of the SaaS app with this client id (built if needed); null if none or unusable. */
  providerForClient(clientId: string): Provider | null {
    const entry = this.gateway.snapshot.current().saasAppsByClientId.get(clientId);
    return entry ? (this.builtFor(entry)?.provider ?? null) : null;
  }

  private builtFor(entry: SaasEntry): Built | null {
    const { app } = entry;
    const key = `${app.id}|${app.updatedAt}|${this.gateway.keys.signingKey().kid}`;
    const existing = this.providers.get(app.clientId);
    if (existing?.key === key) return existing;
    try {
      const spec = saasProviderSpec(entry, {
        teamDomain: this.gateway.settings.teamDomain,
        accountId: this.gateway.account.accountId,
        users: this.gateway.repos.users,
        keys: this.gateway.keys,
        storage: this.storage,
        currentApp: () => this.gateway.snapshot.current().saasAppsByClientId.get(app.clientId),
        decide: this.decide,
      });
      const provider = buildProvider(spec, {
        logger: this.logger,
        keys: this.gateway.keys,
        storage: this.storage,
        masterKey: this.gateway.masterKey,
      });
      const built = { key, provider, handler: provider.callback() };
      this.providers.set(app.clientId, built);
      return built;
    } catch (error) {
      this.logger.warn({ err: error, app: app.id }, 'cannot build the OIDC provider of a SaaS app');
      return null;
    }
  }

  /** OIDC Core §5.3 with the RFC 9068 access token (see access-tokens.ts for why it is ours). */
  private async userinfo(req: IncomingMessage, res: ServerResponse, entry: SaasEntry): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'POST') return json(res, 405, { error: 'invalid_request' });
    const token = bearerToken(req.headers.authorization);
    const refuse = (error: string) => {
      res.setHeader('www-authenticate', `Bearer error="${error}"`);
      json(res, 401, { error });
    };
    if (!token) return refuse('invalid_request');
    const { app } = entry;
    const verified = await verifyIssuedAccessToken(
      { keys: this.gateway.keys, users: this.gateway.repos.users, accountId: this.gateway.account.accountId },
      token,
      {
        issuer: saasIssuer(this.gateway.settings.teamDomain, app.clientId),
        clientId: app.clientId,
        appTokensRevokedAt: app.tokensRevokedAt,
      },
    );
    if (!verified) return refuse('invalid_token');
    const saas = app.config.saas_app;
    const login = await rememberedLogin(this.storage, app.id, verified.user.id);
    const all = userClaims(saas, {
      userId: verified.user.id,
      email: verified.user.email,
      identity: login?.identity ?? null,
    });
    const released = new Set<string>();
    const byScope = claimsByScope(saas);
    for (const scope of (verified.claims.scope ?? '').split(' ')) {
      for (const name of byScope[scope] ?? []) released.add(name);
    }
    const body: Record<string, unknown> = { sub: verified.user.id };
    for (const [name, value] of Object.entries(all)) if (released.has(name)) body[name] = value;
    json(res, 200, body);
  }
}

function json(res: ServerResponse, status: number, body: unknown, cacheControl = 'no-store'): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': cacheControl });
  res.end(JSON.stringify(body));
}

/**
 * The Fastify plugin for the team-domain app. Bodies are left unread (oidc-provider parses its
 * own, with its own limits), and the reply is handed over to the node handler.
 */
export function saasOidcRoutes(service: SaasOidcService) {
  return async (app: FastifyInstance) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
    const route = (request: { raw: IncomingMessage }, reply: { hijack(): void; raw: ServerResponse }) => {
      reply.hijack();
      if (!service.handle(request.raw, reply.raw)) json(reply.raw, 404, { error: 'not_found' });
    };
    app.all(`${SAAS_OIDC_PREFIX}*`, route);
    app.all(`${PATH_INSERTED_METADATA}${SAAS_OIDC_PREFIX}*`, route);
  };
}
