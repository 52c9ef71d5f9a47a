// Managed OAuth at application hosts (spec §2.5; mcp-authorization.md §1.2–1.4), plugged into
// the proxy through its one `managedOAuth` hook. For a self-hosted app with `oauth_configuration`:
// - serves protected-resource metadata (RFC 9728) and authorization-server metadata (RFC 8414);
// - mounts the app's issuer `<app origin>/cdn-cgi/access/oauth` (the shared oidc-provider engine,
//   one lazily built instance per app and host): authorization, token, registration (checked
//   against the app's redirect allow-list first), revocation, JWKS;
// - runs the authorization's interaction through the team domain (the organisation session, the
//   login when there is none, then the app's policies), which hands a short signed result back
//   to the app host: allow → a grant for the app; otherwise `access_denied` to the client;
// - accepts the issuer's access tokens (RFC 9068 JWTs, `aud` = the app's AUD) offline, for this
//   app only, re-checks the app's policies per request like a session, and sends the origin the
//   normal `Cf-Access-Jwt-Assertion`;
// - gives the proxy the `WWW-Authenticate` challenge for its 401s (RFC 9728 §5.1);
// - does the same for WebSocket upgrades (the hook gets no response object then: it only grants,
//   refuses or leaves the decision to the proxy);
// - for a path-scoped app (`mcp.example.com/mcp`) mounts the issuer under the app's path, so
//   each app on a host has its own (metadata.ts).
import { createHash } from 'node:crypto';
import type http from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Gateway } from '../../gateway.ts';
import { type CountrySource, createCountrySource } from '../../geo/country.ts';
import { mintJwt, TokenError, verifyJwt } from '../../keys/jwt.ts';
import { orgSessions } from '../../login/org-session.ts';
import { appServesHost, parseAppHost } from '../../login/redirects.ts';
import { auditTrace } from '../../policy/index.ts';
import type { IdentityDecider } from '../../policy-external/identity-decision.ts';
import { AssertionMinter } from '../../proxy/assertion.ts';
import type { ProxyApp } from '../../proxy/config.ts';
import type { ManagedOAuthOutcome, ManagedOAuthRequest } from '../../proxy/proxy.ts';
import { jsonReply, type Reply } from '../../proxy/replies.ts';
import { hasDuplicateMembers } from '../../proxy/tokens.ts';
import { certificateFacts } from '../../tls/client-certificate.ts';
import { buildProvider, INTERACTION_PATH, type Provider, ROUTES } from '../engine.ts';
import { rememberLogin } from '../saas.ts';
import { ClientMetadataFetcher, type ClientMetadataFetcherOptions } from './client-metadata-document.ts';
import {
  AS_METADATA_PATH,
  appOrigin,
  authorizationServerMetadata,
  bearerChallenge,
  ISSUER_PATH,
  issuerFor,
  protectedResourceMetadata,
  REGISTRATION_ROUTE,
  resourceForMetadataPath,
} from './metadata.ts';
import { checkRegistration } from './registration-policy.ts';
import {
  appServesMount,
  grantSeconds,
  isManaged,
  type ManagedEntry,
  managedProviderSpec,
  RESOURCE_SCOPE,
  resourceBelongsTo,
} from './spec.ts';
import { ManagedOAuthStorage } from './storage.ts';

/** The team-domain step of an authorization: session, login, policies. */
export const TEAM_AUTHORIZE_PATH = '/cdn-cgi/access/oauth/authorize';
const RESULT_SECONDS = 60;
const MAX_REGISTRATION_BYTES = 16 * 1024;
const MAX_PROVIDERS = 500;
const UID = /^[A-Za-z0-9_-]{10,64}$/;
const APP_ID = /^[0-9a-f-]{36}$/;
/** A path-scoped app's mount as the team-domain step receives it back (routing's entry path). */
const MOUNT = /^(\/[A-Za-z0-9._~*-]{1,128}){1,16}$/;
const BEARER = /^Bearer[ \t]+([A-Za-z0-9._~+/-]+=*)[ \t]*$/i;

interface VerifiedAccess {
  sub: string;
  email: string | null;
  iat: number;
  exp: number;
  policyId: string | null;
  precedence: number | null;
}

export interface ManagedOAuthOptions {
  /** How client ID metadata documents are fetched (tests allow loopback and a private CA). */
  clientMetadata?: ClientMetadataFetcherOptions;
  now?: () => number;
}

export class ManagedOAuth {
  private readonly scheme: 'http' | 'https';
  private readonly teamDomain: string;
  private readonly storage: ManagedOAuthStorage;
  private readonly providers = new Map<string, { version: string; provider: Provider }>();
  private readonly verified = new Map<string, VerifiedAccess>();
  private readonly assertions: AssertionMinter;
  private readonly now: () => number;
  private readonly countryOf: CountrySource | null;
  private readonly stopKeys: () => void;

  /** `decide`: identity-time decisions for authorizations and refreshes, external evaluation included. */
  constructor(
    private readonly gateway: Gateway,
    private readonly decide: IdentityDecider,
    options: ManagedOAuthOptions = {},
  ) {
    this.teamDomain = gateway.settings.teamDomain;
    // Gatehouse listens on plain HTTP; the public scheme is the team domain's (as in the proxy).
    this.scheme = this.teamDomain.startsWith('https:') ? 'https' : 'http';
    this.now = options.now ?? Date.now;
    this.countryOf = createCountrySource(gateway.settings);
    const fetcher = new ClientMetadataFetcher(options.clientMetadata);
    this.storage = new ManagedOAuthStorage(gateway.store, gateway.account.accountId, fetcher, (namespace) => {
      const entry = gateway.snapshot.current().appsById.get(namespace);
      return isManaged(entry) ? entry.app.config.oauth_configuration.dynamic_client_registration : null;
    });
    this.assertions = new AssertionMinter(gateway.keys, this.teamDomain, 10_000, () =>
      Math.floor(this.now() / 1000),
    );
    // A rotation withdraws a key: verified tokens are checked again, providers rebuilt (version).
    this.stopKeys = gateway.keys.onChange(() => {
      this.verified.clear();
      this.assertions.clear();
    });
  }

  close(): void {
    this.stopKeys();
  }

  /** The proxy's `managedOAuth` hook. */
  readonly handle = async (request: ManagedOAuthRequest): Promise<ManagedOAuthOutcome | null> => {
    const entry = this.gateway.snapshot.current().appsById.get(request.app.id);
    const { req, res, path } = request;
    if (!isManaged(entry)) {
      // Another app's managed OAuth token is a Gatehouse credential: never the origin's to see
      // (decision 4), and not valid here (RFC 8707). Anything else in Authorization is the origin's.
      const foreign = managedBearer(request.authorization);
      if (foreign === null || !(await this.signedHere(foreign))) return null;
      return refused(tokenRefusal('Bearer error="invalid_token"'));
    }
    const origin = appOrigin(this.scheme, request.host);
    const mount = request.appPath;
    const issuer = issuerFor(origin, mount);
    const issuerPath = `${mount}${ISSUER_PATH}`;
    const challenge = (error: 'invalid_token' | null) => bearerChallenge(origin, path, error, RESOURCE_SCOPE);

    const resource = resourceForMetadataPath(origin, path);
    const asMetadata = path === AS_METADATA_PATH || path === `${AS_METADATA_PATH}${issuerPath}`;
    const issuerEndpoint = path === issuerPath || path.startsWith(`${issuerPath}/`);
    // Documents and the issuer are plain HTTP resources: a WebSocket handshake has no business there.
    if (res === null) {
      if (resource !== null || asMetadata || issuerEndpoint) {
        return refused(jsonReply(400, { error: 'invalid_request', message: 'not a WebSocket endpoint' }));
      }
    } else if (resource !== null) {
      if (req.method === 'OPTIONS') return answered(res, 204, '', corsHeaders());
      const document = protectedResourceMetadata({
        resource,
        issuer,
        name: entry.app.name,
        scope: RESOURCE_SCOPE,
      });
      return answered(res, 200, JSON.stringify(document), { ...corsHeaders(), ...JSON_HEADERS });
    } else if (asMetadata) {
      if (req.method === 'OPTIONS') return answered(res, 204, '', corsHeaders());
      const document = authorizationServerMetadata({
        issuer,
        registration: entry.app.config.oauth_configuration.dynamic_client_registration.enabled,
        scope: RESOURCE_SCOPE,
      });
      return answered(res, 200, JSON.stringify(document), { ...corsHeaders(), ...JSON_HEADERS });
    } else if (issuerEndpoint) {
      await this.issuerRequest(entry, origin, mount, { ...request, res });
      return { kind: 'answered' };
    }

    const token = managedBearer(request.authorization);
    if (token === null) return { kind: 'continue', challenge };
    const access = await this.verify(entry, token);
    if (!access || request.revoked({ iat: access.iat, sub: access.sub })) {
      return refused(tokenRefusal(challenge('invalid_token')));
    }
    const decision =
      access.policyId !== null && access.precedence !== null
        ? request.app.policies.evaluateSession(
            {
              now: this.now(),
              clientIp: request.clientIp,
              ...(request.country !== undefined && { country: request.country }),
              ...certificateFacts(request.req.socket, this.now()),
              identity: { ...(access.email !== null && { email: access.email }), userUid: access.sub },
            },
            { policyId: access.policyId, precedence: access.precedence },
          )
        : null;
    // The token no longer proves enough (its policy is gone or moved): authorize again.
    if (decision === null) {
      return refused(
        jsonReply(
          401,
          { error: 'invalid_token', message: 'authorize again' },
          { 'www-authenticate': challenge('invalid_token') },
        ),
      );
    }
    if (decision.decision !== 'allow' && decision.decision !== 'bypass') {
      return refused(
        jsonReply(403, { error: 'access_denied', message: 'no Access policy allows this request' }),
      );
    }
    return {
      kind: 'grant',
      assertion: await this.assertion(request.app, token, access),
      email: access.email,
    };
  };

  /** Team-domain routes: the authorization's login-and-policy step. */
  teamRoutes() {
    const sessions = orgSessions(this.gateway);
    const teamPort = new URL(this.teamDomain).port;
    return async (app: FastifyInstance) => {
      app.get(TEAM_AUTHORIZE_PATH, async (request, reply) => {
        const query = request.query as Record<string, unknown>;
        const { app: appId, host: hostParam, uid, path: mountParam = '' } = query;
        const host = typeof hostParam === 'string' ? parseAppHost(hostParam, teamPort) : null;
        const entry =
          typeof appId === 'string' && APP_ID.test(appId)
            ? this.gateway.snapshot.current().appsById.get(appId)
            : undefined;
        if (
          !host ||
          typeof uid !== 'string' ||
          !UID.test(uid) ||
          !isManaged(entry) ||
          !appServesHost(entry.app, host.hostname) ||
          typeof mountParam !== 'string' ||
          (mountParam !== '' &&
            !(MOUNT.test(mountParam) && appServesMount(entry.app, host.hostname, mountParam)))
        ) {
          return reply
            .code(400)
            .type('text/plain; charset=utf-8')
            .send('This authorization link is not valid.\n');
        }
        const session = await sessions.current({ cookie: request.headers.cookie });
        if (!session) {
          const back = `${TEAM_AUTHORIZE_PATH}?${teamAuthorizeQuery(appId as string, host.host, mountParam, uid)}`;
          return reply
            .code(302)
            .header('cache-control', 'no-store')
            .header('location', sessions.loginUrl(back))
            .send();
        }
        const ip = request.ip.replace(/^::ffff:/, '');
        const certificate = certificateFacts(request.raw.socket, this.now());
        const country = this.countryOf?.(ip, request.headers);
        const geo = country === undefined ? {} : { country };
        // An identity-time decision: external evaluation endpoints are asked here.
        const decision = entry.compiled
          ? await this.decide(entry.compiled, {
              identity: { ...session.identity, userUid: session.userId },
              clientIp: ip,
              ...certificate,
              ...geo,
            })
          : null;
        const allowed = decision?.decision === 'allow';
        // The authentication log (spec §6), as the login records a hand-off to an app.
        await this.gateway.repos.accessRequests.record({
          accountId: this.gateway.account.accountId,
          action: 'login',
          allowed,
          userEmail: session.email,
          userId: session.userId,
          ipAddress: ip,
          country: country ?? null,
          policyTrace: decision && auditTrace(decision),
          appUid: entry.app.id,
          appDomain: host.host,
          appType: entry.app.type,
          connection: session.identity.idp.type,
          idpId: session.identity.idp.id,
        });
        if (allowed) {
          // Kept for the tokens' policy claims and for refreshes, which re-run the policies.
          await rememberLogin(
            this.storage,
            entry.app.id,
            session.userId,
            { identity: session.identity, ip, ...certificate, ...geo },
            grantSeconds(entry.app),
          );
        }
        const interaction = interactionUrl(issuerFor(appOrigin(this.scheme, host.host), mountParam), uid);
        const result = await mintJwt(
          this.gateway.keys,
          { aud: interaction, sub: session.userId, outcome: allowed ? 'allow' : 'deny' },
          { issuer: this.teamDomain, expiresAt: Math.floor(this.now() / 1000) + RESULT_SECONDS },
        );
        const back = `${interaction}/complete?${new URLSearchParams({ result })}`;
        return reply.code(302).header('cache-control', 'no-store').header('location', back).send();
      });
    };
  }

  private async issuerRequest(
    entry: ManagedEntry,
    origin: string,
    mount: string,
    request: HttpRequest,
  ): Promise<void> {
    const { req, res, path } = request;
    const provider = this.providerFor(entry, origin, mount);
    const issuerPath = `${mount}${ISSUER_PATH}`;
    const interaction = path.startsWith(`${issuerPath}${INTERACTION_PATH}`)
      ? path.slice(`${issuerPath}${INTERACTION_PATH}`.length).split('/')
      : null;
    if (interaction && req.method === 'GET') {
      const [uid, step] = interaction;
      if (uid && UID.test(uid) && step === undefined)
        return this.startInteraction(entry, provider, request, mount, uid);
      if (uid && UID.test(uid) && step === 'complete' && interaction.length === 2) {
        return this.completeInteraction(provider, issuerFor(origin, mount), request, uid);
      }
      answered(res, 404, 'Not found\n', TEXT_HEADERS);
      return;
    }
    if (path === `${issuerPath}${REGISTRATION_ROUTE}` && req.method === 'POST') {
      const refused = await this.precheckRegistration(entry, req);
      if (refused) {
        answered(res, 400, JSON.stringify(refused), JSON_HEADERS);
        return;
      }
    }
    let url = req.url ?? '';
    if (!url.startsWith(issuerPath)) {
      answered(res, 404, 'Not found\n', TEXT_HEADERS);
      return;
    }
    if (path === `${issuerPath}${ROUTES.authorization}`) url = withDefaultScope(url);
    // Mount at the issuer's path: oidc-provider reads its mount point from `originalUrl`.
    (req as http.IncomingMessage & { originalUrl?: string }).originalUrl = url;
    req.url = url.slice(issuerPath.length) || '/';
    await provider.callback()(req, res);
  }

  /** The browser arrives from the authorization endpoint: on to the team domain to sign in. */
  private async startInteraction(
    entry: ManagedEntry,
    provider: Provider,
    request: HttpRequest,
    mount: string,
    uid: string,
  ) {
    const { req, res } = request;
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.uid !== uid) throw new Error('interaction mismatch');
    } catch {
      authorizationExpired(res);
      return;
    }
    const target = new URL(TEAM_AUTHORIZE_PATH, this.teamDomain);
    target.search = teamAuthorizeQuery(entry.app.id, request.host, mount, uid);
    answered(res, 302, '', { location: target.href, 'cache-control': 'no-store' });
  }

  /** Back from the team domain with its signed result: finish with a grant, or access_denied. */
  private async completeInteraction(provider: Provider, issuer: string, request: HttpRequest, uid: string) {
    const { req, res } = request;
    const result = new URLSearchParams(request.query.replace(/^\?/, '')).get('result');
    let claims: { sub: string; outcome: unknown };
    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      if (!result) throw new TokenError('no result');
      ({ payload: claims } = (await verifyJwt(this.gateway.keys, result, {
        issuer: this.teamDomain,
        audience: interactionUrl(issuer, uid),
        requiredClaims: ['sub', 'outcome'],
      })) as unknown as { payload: { sub: string; outcome: unknown } });
      // The interaction cookie ties this to the browser that started the authorization.
      details = await provider.interactionDetails(req, res);
      if (details.uid !== uid) throw new TokenError('interaction mismatch');
    } catch {
      authorizationExpired(res);
      return;
    }
    if (claims.outcome !== 'allow') {
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'no Access policy allows this user' },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    const clientId = String(details.params.client_id);
    const grant = new provider.Grant({ accountId: claims.sub, clientId });
    const requested = new Set(String(details.params.scope ?? '').split(' '));
    for (const scope of ['openid', 'offline_access']) if (requested.has(scope)) grant.addOIDCScope(scope);
    // The app is one resource: the scope is all of it (spec.ts RESOURCE_SCOPE).
    const resource = details.params.resource;
    // Without one, the app at the issuer's origin and path (spec.ts defaultResource).
    const appResource = issuer.slice(0, -ISSUER_PATH.length);
    grant.addResourceScope(typeof resource === 'string' ? resource : appResource, RESOURCE_SCOPE);
    const grantId = await grant.save();
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: claims.sub }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
  }

  /**
   * RFC 7591 request checked against the app's allow-list before oidc-provider registers it. The
   * body is read here (bounded) and handed on as `req.body`, which oidc-provider then uses.
   */
  private async precheckRegistration(
    entry: ManagedEntry,
    req: http.IncomingMessage,
  ): Promise<{ error: string; error_description: string } | null> {
    const settings = entry.app.config.oauth_configuration.dynamic_client_registration;
    if (!settings.enabled) return null; // oidc-provider has no registration route then: 404
    let text: string;
    try {
      text = await readBody(req, MAX_REGISTRATION_BYTES);
    } catch {
      return { error: 'invalid_client_metadata', error_description: 'the registration request is too large' };
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { error: 'invalid_client_metadata', error_description: 'the body must be JSON' };
    }
    const refusal = checkRegistration(body, settings);
    if (refusal) return { error: refusal.error, error_description: refusal.description };
    // A registration names a public client unless it says otherwise (which checkRegistration
    // refuses). Its `scope` is dropped: the app has one scope, which every client may ask for, and
    // RFC 7591 §3.2.1 lets the server replace requested metadata (the response shows what holds).
    const { scope: _scope, ...fields }: Record<string, unknown> = {
      token_endpoint_auth_method: 'none',
      ...(body as Record<string, unknown>),
    };
    (req as http.IncomingMessage & { body?: string }).body = JSON.stringify(fields);
    return null;
  }

  private providerFor(entry: ManagedEntry, origin: string, mount: string): Provider {
    const key = `${entry.app.id}\n${origin}${mount}`;
    const version = `${entry.app.updatedAt}\n${this.gateway.keys.signingKey().kid}`;
    const cached = this.providers.get(key);
    if (cached?.version === version) return cached.provider;
    const appId = entry.app.id;
    const spec = managedProviderSpec(entry, origin, mount, {
      accountId: this.gateway.account.accountId,
      users: this.gateway.repos.users,
      storage: this.storage,
      currentApp: () => {
        const current = this.gateway.snapshot.current().appsById.get(appId);
        return isManaged(current) ? current : undefined;
      },
      decide: this.decide,
    });
    const provider = buildProvider(spec, {
      keys: this.gateway.keys,
      storage: this.storage,
      masterKey: this.gateway.masterKey,
    });
    this.providers.delete(key);
    if (this.providers.size >= MAX_PROVIDERS) this.providers.delete(this.providers.keys().next().value!);
    this.providers.set(key, { version, provider });
    return provider;
  }

  /**
   * Decision 6: an access token of this app's issuer (at any of the app's hosts), `aud` = the
   * app's AUD, verified offline with the account's keys; cached by digest until it expires.
   */
  private async verify(entry: ManagedEntry, token: string): Promise<VerifiedAccess | null> {
    const digest = createHash('sha256').update(token).digest('base64');
    const nowSeconds = Math.floor(this.now() / 1000);
    const cacheKey = `${entry.app.aud}\n${digest}`;
    const cached = this.verified.get(cacheKey);
    if (cached) {
      if (cached.exp > nowSeconds) return cached;
      this.verified.delete(cacheKey);
      return null;
    }
    const iss = unverifiedIssuer(token);
    if (!iss || !URL.canParse(iss)) return null;
    const issuerUrl = new URL(iss);
    // `<app origin>[<app path>]/cdn-cgi/access/oauth`, at one of the app's hosts (and paths).
    const mount = iss.slice(issuerUrl.origin.length, iss.length - ISSUER_PATH.length);
    if (
      issuerUrl.protocol !== `${this.scheme}:` ||
      iss !== issuerFor(issuerUrl.origin, mount) ||
      !resourceBelongsTo(entry.app, issuerUrl.origin, issuerUrl.origin) ||
      (mount !== '' && !appServesMount(entry.app, issuerUrl.hostname, mount))
    ) {
      return null;
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await verifyJwt(this.gateway.keys, token, {
        issuer: iss,
        audience: entry.app.aud,
        type: 'at+jwt',
        requiredClaims: ['sub', 'client_id', 'jti'],
        now: new Date(nowSeconds * 1000),
      }));
    } catch (error) {
      if (error instanceof TokenError) return null;
      throw error;
    }
    const { sub, email, iat, exp, policy_id: policyId, policy_precedence: precedence } = payload;
    if (typeof sub !== 'string' || typeof iat !== 'number' || typeof exp !== 'number' || exp <= nowSeconds)
      return null;
    const access: VerifiedAccess = {
      sub,
      email: typeof email === 'string' ? email : null,
      iat,
      exp,
      policyId: typeof policyId === 'string' ? policyId : null,
      precedence: typeof precedence === 'number' && Number.isSafeInteger(precedence) ? precedence : null,
    };
    if (this.verified.size >= 10_000) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(cacheKey, access);
    return access;
  }

  /** Whether a managed-OAuth-looking token carries a valid signature of the account's keys. */
  private async signedHere(token: string): Promise<boolean> {
    try {
      await verifyJwt(this.gateway.keys, token, { issuer: unverifiedIssuer(token)!, type: 'at+jwt' });
      return true;
    } catch (error) {
      if (error instanceof TokenError) return false;
      throw error;
    }
  }

  /** The origin's `Cf-Access-Jwt-Assertion`: an Access app token for the user (spec §4.3). */
  private assertion(app: ProxyApp, token: string, access: VerifiedAccess): Promise<string> {
    const digest = createHash('sha256').update(token).digest('base64');
    const nowSeconds = Math.floor(this.now() / 1000);
    const expiresAt = Math.min(access.exp, nowSeconds + app.sessionDurationSeconds);
    return this.assertions.entry(`m:${digest}:${app.aud}`, expiresAt, () => ({
      type: 'app',
      aud: [app.aud],
      sub: access.sub,
      ...(access.email !== null && { email: access.email }),
      ...(access.policyId !== null && { policy_id: access.policyId, policy_precedence: access.precedence }),
    })).token;
  }
}

/** A request the hook may answer itself (not a WebSocket upgrade). */
type HttpRequest = ManagedOAuthRequest & { res: http.ServerResponse };

const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' };
const TEXT_HEADERS = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };

/** Metadata is public; browser-based MCP clients fetch it cross-origin with MCP-Protocol-Version. */
function corsHeaders(): Record<string, string> {
  return {
    'access-control-allow-origin': '*',
    'access-control-allow-methods': 'GET, OPTIONS',
    'access-control-allow-headers': 'mcp-protocol-version',
  };
}

function answered(
  res: http.ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string>,
): ManagedOAuthOutcome {
  res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
  return { kind: 'answered' };
}

/**
 * An authorization request without `scope` gets the app's scope (RFC 6749 §3.3 lets the server
 * use a default): the grant must hold a scope for oidc-provider to issue a token for the resource.
 */
function withDefaultScope(url: string): string {
  const question = url.indexOf('?');
  if (question === -1) return url;
  const params = new URLSearchParams(url.slice(question + 1));
  if (params.get('scope')) return url;
  params.set('scope', RESOURCE_SCOPE);
  return `${url.slice(0, question)}?${params}`;
}

/** An interaction's URL at its issuer: the audience of the team domain's signed result. */
function interactionUrl(issuer: string, uid: string): string {
  return `${issuer}${INTERACTION_PATH}${uid}`;
}

/** The team-domain step's query: the app, the host (and path) the authorization started at. */
function teamAuthorizeQuery(appId: string, host: string, mount: string, uid: string): string {
  return new URLSearchParams({ app: appId, host, ...(mount !== '' && { path: mount }), uid }).toString();
}

function authorizationExpired(res: http.ServerResponse): void {
  answered(res, 400, 'This authorization has expired. Start again from your application.\n', TEXT_HEADERS);
}

/** A refused token: 401 `invalid_token` with the app's challenge (RFC 6750 §3.1, RFC 9728 §5.1). */
function tokenRefusal(challenge: string): Reply {
  return jsonReply(
    401,
    { error: 'invalid_token', message: 'the access token is not valid here' },
    { 'www-authenticate': challenge },
  );
}

function refused(reply: Reply): ManagedOAuthOutcome {
  return { kind: 'refused', reply };
}

/** The bearer token when it looks like one of managed OAuth's (an `at+jwt` of an app issuer). */
function managedBearer(values: readonly string[]): string | null {
  if (values.length !== 1) return null;
  const token = BEARER.exec(values[0]!)?.[1];
  if (!token) return null;
  return unverifiedIssuer(token)?.endsWith(ISSUER_PATH) ? token : null;
}

function unverifiedIssuer(token: string): string | null {
  const [header, payload] = token.split('.');
  if (!header || !payload || payload.length > 8192) return null;
  try {
    const headerJson = Buffer.from(header, 'base64url').toString('utf8');
    const payloadJson = Buffer.from(payload, 'base64url').toString('utf8');
    const typ = (JSON.parse(headerJson) as { typ?: unknown }).typ;
    const iss = (JSON.parse(payloadJson) as { iss?: unknown }).iss;
    // Duplicate members could mean one thing here and another to jose: not ours then.
    if (hasDuplicateMembers(payloadJson) || hasDuplicateMembers(headerJson)) return null;
    return typ === 'at+jwt' && typeof iss === 'string' ? iss : null;
  } catch {
    return null;
  }
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error('too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
