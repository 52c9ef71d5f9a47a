// The data plane: for a request to an application host, find the app and the origin, decide
// with the app's policies and the request's credentials, and forward with Gatehouse's identity
// headers, or answer (302 to login, 401, 403, Access endpoints) without touching the origin.
// Everything here reads in-memory state: the configuration snapshot, the key ring, the caches.
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { CountrySource } from '../geo/country.ts';
import { beginHandOff } from '../keys/app-session.ts';
import { TokenError } from '../keys/jwt.ts';
import type { KeyRing } from '../keys/keyring.ts';
import { serviceTokenUsable } from '../keys/service-token-secrets.ts';
import { type AuditTrace, auditTrace } from '../policy/audit-trace.ts';
import type { AdmittedBy } from '../policy/session.ts';
import type { Decision, Identity, RequestContext } from '../policy/types.ts';
import { verifiedClientCertificate } from '../tls/client-certificate.ts';
import { type AssertionEntry, AssertionMinter, whenSigned } from './assertion.ts';
import type { ProxyApp, ProxyConfig, ProxyConfigSource, ServiceTokenRecord } from './config.ts';
import { applyCors, corsPreflight, corsResponseHeaders } from './cors.ts';
import { appCookieHeader, handleAccessEndpoint, sameHostPath } from './endpoints.ts';
import {
  DEFAULT_FORWARD_LIMITS,
  ForwardError,
  Forwarder,
  type ForwardLimits,
  type ForwardRequest,
} from './forward.ts';
import { type ScannedHeaders, scanRequestHeaders, splitCookies } from './headers.ts';
import { managedOAuthRoute } from './managed-routing.ts';
import type { ProxyEvents } from './recorder.ts';
import { htmlReply, jsonReply, pageReply, type Reply, sendReply, writeRawReply } from './replies.ts';
import {
  type OriginTarget,
  parseRequestTarget,
  type RequestTarget,
  type Route,
  RoutingTable,
  stripPort,
} from './routing.ts';
import { readServiceCredential } from './service-tokens.ts';
import { type AppTokenClaims, TokenVerifier, type VerifiedToken } from './tokens.ts';

export interface ProxyOptions {
  /** Origin of the team domain: the `iss` of app tokens and where logins happen. */
  teamDomain: string;
  keys: KeyRing;
  config: ProxyConfigSource;
  limits?: Partial<ForwardLimits>;
  /** Entries in each of the verified-token and assertion caches. */
  cacheEntries?: number;
  /** Clock in ms, for tests. */
  now?: () => number;
  /** Reports failures that are Gatehouse's fault (never client mistakes). */
  onError?: (error: unknown) => void;
  /** The client's country for `geo` rules (src/geo/country.ts); absent when no source is configured. */
  country?: CountrySource | null;
  /** Service-token use and access-request rows, written off the request path (recorder.ts); closed with the proxy. */
  events?: ProxyEvents & { close?(): Promise<void> };
  /**
   * Managed OAuth (spec §2.5, src/oidc/managed/): consulted first for each request to an app with
   * `oauth_configuration` (ProxyApp.managedOAuth), and for a request to any other app that carries
   * an Authorization header (it may hold another app's managed-OAuth token, which the hook
   * refuses); null when the proxy is to serve the request as usual.
   */
  managedOAuth?: (request: ManagedOAuthRequest) => Promise<ManagedOAuthOutcome | null>;
}

/** A request to a managed-OAuth app, as the hook sees it. */
export interface ManagedOAuthRequest {
  req: http.IncomingMessage;
  /** Null for a WebSocket upgrade: the hook then never answers itself (no `answered`). */
  res: http.ServerResponse | null;
  app: ProxyApp;
  host: string;
  /** The path of the app's matched hostname entry (`/mcp`), '' for a whole host. */
  appPath: string;
  /** The normalised path (routing's matchPath) and the query with its `?`. */
  path: string;
  query: string;
  authorization: readonly string[];
  clientIp: string;
  /** The client's country from the configured source, for `geo` rules re-checked per request. */
  country: string | undefined;
  /** Decision 3 for this app: issued before `revoke_tokens` or the user's revocation. */
  revoked(claims: { iat: number; sub: string }): boolean;
}

/**
 * `answered`: the hook wrote the response (metadata, its issuer). `refused`: the proxy sends this
 * refusal (a bad token). `grant`: its access token let the request in as this user. `continue`:
 * the proxy decides, and its 401s carry the hook's `WWW-Authenticate` challenge (RFC 9728 §5.1).
 */
export type ManagedOAuthOutcome =
  | { kind: 'answered' }
  | { kind: 'refused'; reply: Reply }
  | { kind: 'grant'; assertion: string; email: string | null }
  | { kind: 'continue'; challenge(error: 'invalid_token' | null): string };

/** What the origin gets to know about the request's identity. */
interface Grant {
  assertion: string | null;
  email: string | null;
  /** The Authorization header carried a Gatehouse token: it is not the origin's to see. */
  dropAuthorization: boolean;
  /** `Set-Cookie` for the client: the app cookie a service token earns outside strict mode. */
  setCookie?: string;
}

/** Facts about the client the request came from, read once per request. */
interface ClientFacts {
  ip: string;
  country: string | undefined;
  /** The connection's verified client certificate (src/tls/client-certificate.ts). */
  mtls: RequestContext['mtls'];
}

/** The request as read once, before any decision (GatehouseProxy.incoming). */
interface Incoming {
  headers: ScannedHeaders;
  cookies: { tokens: string[]; rest: string | null };
  client: ClientFacts;
  /** The clock, read once for the whole request. */
  nowMs: number;
}

/** A credential's decision at one app for one set of client facts. */
interface RememberedDecision<D extends Decision | null = Decision | null> {
  app: ProxyApp;
  ip: string | undefined;
  country: string | undefined;
  mtls: RequestContext['mtls'];
  decision: D;
}

/** A presented token, with where it came from. */
interface Presented {
  token: string;
  source: 'header' | 'cookie';
}

export interface RequestState {
  config: ProxyConfig;
  table: RoutingTable;
}

const BEARER = /^Bearer[ \t]+([A-Za-z0-9._~+/-]+=*)[ \t]*$/i;

export class GatehouseProxy {
  private config: ProxyConfig | null = null;
  private revocations = '';
  private minted = '';
  private table: RoutingTable | null = null;
  readonly tokens: TokenVerifier;
  private readonly assertions: AssertionMinter;
  private readonly forwarder: Forwarder;
  private readonly now: () => number;
  private readonly publicScheme: 'http' | 'https';
  private readonly stopKeys: () => void;
  /**
   * Each verified token's or service token's last decision and the client facts it was made for
   * (rememberedDecision).
   */
  private readonly decisions = new WeakMap<VerifiedToken | ServiceTokenRecord, RememberedDecision>();
  /** The `Set-Cookie` a service token's assertion was last sent with (serviceGrant). */
  private readonly serviceCookies = new WeakMap<
    AssertionEntry,
    { app: ProxyApp; appPath: string; header: string }
  >();

  constructor(private readonly options: ProxyOptions) {
    this.now = options.now ?? (() => Date.now());
    const nowSeconds = () => Math.floor(this.now() / 1000);
    const entries = options.cacheEntries ?? 10_000;
    this.tokens = new TokenVerifier(options.keys, options.teamDomain, entries, nowSeconds);
    this.assertions = new AssertionMinter(options.keys, options.teamDomain, entries, nowSeconds);
    this.forwarder = new Forwarder({ ...DEFAULT_FORWARD_LIMITS, ...options.limits });
    // Gatehouse listens on plain HTTP; the public scheme is the deployment's, which the team
    // domain tells (a TLS terminator in front serves both).
    this.publicScheme = options.teamDomain.startsWith('https:') ? 'https' : 'http';
    // A rotation withdraws keys: tokens verified under them must be checked again.
    this.stopKeys = options.keys.onChange(() => {
      this.tokens.clear();
      this.assertions.clear();
    });
  }

  async close(): Promise<void> {
    this.stopKeys();
    await this.forwarder.close();
    await this.options.events?.close?.();
  }

  /** `ServerOptions.appHosts`: true when the host is an application host (then it answered). */
  readonly handleRequest = (req: http.IncomingMessage, res: http.ServerResponse, host: string): boolean => {
    const state = this.state();
    const target = parseRequestTarget(req.url ?? '');
    const route = this.route(state, host, target);
    if (!route.app && !route.hostRouted) return false;
    this.serve(state, req, res, host, route, target).catch((error) => {
      this.options.onError?.(error);
      if (res.headersSent) res.destroy();
      else sendReply(res, pageReply(502, req));
    });
    return true;
  };

  /** `ServerOptions.appUpgrades`: WebSocket handshakes, authorized exactly like requests. */
  readonly handleUpgrade = (
    req: http.IncomingMessage,
    socket: Duplex,
    head: Buffer,
    host: string,
  ): boolean => {
    const state = this.state();
    const target = parseRequestTarget(req.url ?? '');
    const route = this.route(state, host, target);
    if (!route.app && !route.hostRouted) return false;
    socket.on('error', () => socket.destroy());
    this.serveUpgrade(state, req, socket, head, host, route, target).catch((error) => {
      if (!(error instanceof ForwardError)) this.options.onError?.(error);
      writeRawReply(socket, pageReply(error instanceof ForwardError ? error.status : 502, req));
    });
    return true;
  };

  private state(): RequestState {
    const config = this.options.config();
    if (config !== this.config || !this.table) {
      this.config = config;
      this.table = new RoutingTable(config.apps, config.ingress);
      // Assertions carry app settings (session length) and must not predate `revoke_tokens`:
      // they start over when those change, not on every rebuild (a logout elsewhere, a new app).
      const minted = assertionState(config);
      if (minted !== this.minted) this.assertions.clear();
      this.minted = minted;
      // Verified tokens start over on a revocation (revoke_tokens, revoke_user, logout, a
      // service token deleted, disabled or rotated), not on every change: a login also changes
      // the configuration (users). Revocations are checked per request as well, so no cached
      // entry outlives one either way.
      const revocations = revocationState(config);
      if (revocations !== this.revocations) this.tokens.clear();
      this.revocations = revocations;
      this.forwarder.sync(this.table.origins());
    }
    return { config, table: this.table };
  }

  private async serve(
    state: RequestState,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    host: string,
    route: Route,
    target: RequestTarget | null,
  ): Promise<void> {
    if (!target) return sendReply(res, pageReply(400, req));
    const { app } = route;
    const incoming = this.incoming(req, app);
    const { headers } = incoming;
    if (this.forwarder.declaredTooLarge(headers.contentLength)) return sendReply(res, pageReply(413, req));
    let grant = noIdentity();
    let cors: Record<string, string> | null = null;
    if (!app) {
      // Routed by ingress, covered by no app (ARCHITECTURE.md §2).
      if (state.config.org.denyUnmatchedRequests) return sendReply(res, pageReply(403, req));
    } else {
      const consulted = this.consultManagedOAuth(state, req, res, app, host, route, target, incoming);
      const managed = consulted && (await consulted);
      if (managed?.kind === 'answered') return;
      if (managed?.kind === 'refused') return sendReply(res, managed.reply);
      if (
        target.matchPath === '/cdn-cgi/access/login' ||
        target.matchPath.startsWith('/cdn-cgi/access/login/')
      ) {
        // cloudflared and scripts start a login at the app host; it happens on the team domain.
        const redirect = sameHostPath(new URLSearchParams(target.query).get('redirect_url'));
        return sendReply(res, this.loginRedirect(app, headers, host, redirect));
      }
      if (target.matchPath.startsWith('/cdn-cgi/access/')) {
        const reply = await handleAccessEndpoint(
          this.endpointContext(state, req, headers, host, route, target),
        );
        return sendReply(res, reply);
      }
      const preflight =
        req.method === 'OPTIONS' && headers.origin !== null && req.headers['access-control-request-method'];
      if (preflight && app.cors) return sendReply(res, corsPreflight(app.cors, req, headers.origin!));
      cors = app.cors && headers.origin !== null ? corsResponseHeaders(app.cors, headers.origin) : null;
      if (!(preflight && app.optionsPreflightBypass)) {
        const outcome = await this.decide(state, app, managed, incoming, host, target, route.appPath);
        if ('status' in outcome) {
          if (cors) applyCors(outcome.headers, cors);
          return sendReply(res, withManagedChallenge(outcome, managed));
        }
        grant = outcome;
      }
    }
    if (!route.target) return sendReply(res, pageReply(502, req));
    if (route.target.kind === 'status') return sendReply(res, pageReply(route.target.status, req));
    this.forwarder.forward(
      this.toOrigin(route.target.origin, req.method ?? 'GET', target, incoming, grant, host, cors),
      req,
      res,
      (error) => sendReply(res, pageReply(error.status, req)),
    );
  }

  private async serveUpgrade(
    state: RequestState,
    req: http.IncomingMessage,
    socket: Duplex,
    head: Buffer,
    host: string,
    route: Route,
    target: RequestTarget | null,
  ): Promise<void> {
    if (!target) return writeRawReply(socket, pageReply(400, req));
    const { app } = route;
    const incoming = this.incoming(req, app);
    const { headers } = incoming;
    let grant = noIdentity();
    if (!app) {
      if (state.config.org.denyUnmatchedRequests) return writeRawReply(socket, pageReply(403, req));
    } else {
      // Managed OAuth applies to the handshake as to any request: its token, or its 401 challenge.
      const consulted = this.consultManagedOAuth(state, req, null, app, host, route, target, incoming);
      const managed = consulted && (await consulted);
      if (managed?.kind === 'refused') return writeRawReply(socket, managed.reply);
      const outcome = await this.decide(state, app, managed, incoming, host, target, route.appPath);
      if ('status' in outcome) return writeRawReply(socket, withManagedChallenge(outcome, managed));
      grant = outcome;
    }
    if (!route.target || !headers.upgrade) return writeRawReply(socket, pageReply(502, req));
    if (route.target.kind === 'status') return writeRawReply(socket, pageReply(route.target.status, req));
    await this.forwarder.upgrade(
      this.toOrigin(route.target.origin, 'GET', target, incoming, grant, host, null),
      headers.upgrade,
      socket,
      head,
    );
  }

  /** What requests and WebSocket handshakes alike read from the client before deciding. */
  private incoming(req: http.IncomingMessage, app: ProxyApp | null): Incoming {
    const headers = scanRequestHeaders(req.rawHeaders, app?.serviceTokenHeader ?? null);
    const ip = clientIp(req);
    const nowMs = this.now();
    return {
      headers,
      cookies: splitCookies(headers.cookie),
      client: {
        ip,
        country: this.options.country?.(ip, req.headers),
        mtls: verifiedClientCertificate(req.socket, nowMs),
      },
      nowMs,
    };
  }

  /** Managed OAuth's grant when it gave one, else the app's own decision (authorize). */
  private decide(
    state: RequestState,
    app: ProxyApp,
    managed: ManagedOAuthOutcome | null,
    incoming: Incoming,
    host: string,
    target: RequestTarget,
    appPath: string,
  ): Promise<Grant | Reply> | Grant {
    if (managed?.kind === 'grant') {
      return { assertion: managed.assertion, email: managed.email, dropAuthorization: true };
    }
    return this.authorize(state, app, incoming, host, target, appPath);
  }

  /** Where and what to send upstream, with the origin's headers (originHeaders). */
  private toOrigin(
    origin: OriginTarget,
    method: string,
    target: RequestTarget,
    incoming: Incoming,
    grant: Grant,
    host: string,
    cors: Record<string, string> | null,
  ): ForwardRequest {
    const { headers, cookies, client } = incoming;
    return {
      target: origin,
      method,
      path: target.forwardPath + target.query,
      headers: this.originHeaders(headers, cookies.rest, grant, client, host, origin.httpHostHeader),
      contentLength: headers.contentLength,
      chunked: headers.chunked,
      cors,
      setCookie: grant.setCookie ?? null,
    };
  }

  /** The route of a request; managed OAuth's path-inserted documents go to the app they name. */
  private route(state: RequestState, host: string, target: RequestTarget | null): Route {
    const path = target?.matchPath ?? '/';
    const bare = stripPort(host);
    return managedOAuthRoute(state.table, bare, path, state.table.route(bare, path));
  }

  /**
   * The managed-OAuth hook's view of a request to `app` (`res` null for an upgrade); null, with
   * no promise to wait for, when the hook has nothing to say: the app is not a managed-OAuth app
   * and no bearer token (possibly another app's managed-OAuth token) is presented.
   */
  private consultManagedOAuth(
    state: RequestState,
    req: http.IncomingMessage,
    res: http.ServerResponse | null,
    app: ProxyApp,
    host: string,
    route: Route,
    target: RequestTarget,
    { headers, client }: Incoming,
  ): Promise<ManagedOAuthOutcome | null> | null {
    if (!this.options.managedOAuth) return null;
    if (!app.managedOAuth && headers.authorization.length === 0) return null;
    return this.options.managedOAuth({
      req,
      res,
      app,
      host,
      appPath: route.appPath,
      path: target.matchPath,
      query: target.query,
      authorization: headers.authorization,
      clientIp: client.ip,
      country: client.country,
      revoked: this.revokedAt(state.config, app),
    });
  }

  /**
   * Decision 3 for one app, as a function for the managed OAuth hook. Returned, not written as
   * an object's arrow-function property: tsx (esbuild keepNames) would name that with a
   * `__name` defineProperty call on every request.
   */
  private revokedAt(config: ProxyConfig, app: ProxyApp): (claims: { iat: number; sub: string }) => boolean {
    return (claims) => this.revoked(config, claims, app);
  }

  /**
   * Cloudflare's order (spec §3.3) applied to the credentials at hand: a service token, then a
   * token in `Cf-Access-Token` / `Authorization: Bearer` (the app's own token, or a linked
   * token), then the `CF_Authorization` cookie; each evaluated with only its own facts, so the
   * identity sent to the origin is the one that was allowed in.
   */
  private async authorize(
    state: RequestState,
    app: ProxyApp,
    incoming: Incoming,
    host: string,
    target: RequestTarget,
    appPath: string,
  ): Promise<Grant | Reply> {
    const { config } = state;
    const { headers, client, nowMs } = incoming;
    const nowSeconds = Math.floor(nowMs / 1000);
    const base = requestContext(client, nowMs);
    const browser = headers.accept.includes('text/html') && !headers.requestedWith;
    let deniedByNonIdentity = false;
    let deniedByIdentity = false;

    const service = readServiceCredential(headers, config.serviceTokens, nowSeconds);
    // Strict mode (spec §4.5): with service-token headers present, nothing else counts, and the
    // client gets no app cookie for them.
    const strict = service.kind !== 'none' && config.org.strictServiceTokens;
    if (strict && service.kind === 'invalid') return unauthorized('invalid_token');
    if (service.kind === 'valid') {
      const decision = this.serviceDecision(app, service.token, base);
      if (decision.decision === 'bypass') return noIdentity();
      const allowed = decision.decision === 'non_identity';
      this.serviceTokenSeen(app, service.token.id, base, host, allowed);
      if (allowed) {
        const cookiePath = strict ? null : appPath;
        return this.serviceGrant(app, service.token.clientId, service.token.id, nowSeconds, cookiePath);
      }
      if (strict) return this.forbidden(app, browser, 'non_identity');
      deniedByNonIdentity = true;
    }

    // A token in a header: Cf-Access-Token, or a bearer token that Gatehouse issued.
    const bearer = this.gatehouseBearer(headers.authorization);
    if (headers.accessToken.length > 1 || bearer === 'invalid') return unauthorized('invalid_token');
    const presented: Presented[] = [];
    if (headers.accessToken.length === 1)
      presented.push({ token: headers.accessToken[0]!.trim(), source: 'header' });
    if (bearer) presented.push({ token: bearer, source: 'header' });
    // RFC 6265 lets a name repeat (different paths); a couple is plenty, more is an attack.
    for (const token of incoming.cookies.tokens.slice(0, 2)) presented.push({ token, source: 'cookie' });
    const dropAuthorization = bearer !== null;
    let invalidCookie = false;

    for (const { token, source } of presented) {
      let verified: VerifiedToken;
      try {
        verified = this.tokens.lookup(token, nowSeconds) ?? (await this.tokens.verify(token));
      } catch (error) {
        if (!(error instanceof TokenError)) throw error;
        // A broken token in a header is a client bug worth reporting; a stale cookie means "log in".
        if (source === 'header') return unauthorized('invalid_token');
        invalidCookie = true;
        continue;
      }
      const own = verified.kind === 'app' && verified.claims.aud.includes(app.aud);
      if (own) {
        if (this.revoked(config, verified.claims, app)) {
          if (source === 'header') return unauthorized('invalid_token');
          invalidCookie = true;
          continue;
        }
        const claims = verified.claims as AppTokenClaims;
        const decision = this.sessionDecision(config, app, verified, claims, base, nowMs);
        if (decision === null) {
          // The token no longer proves enough (its policy is gone or moved, or the request facts
          // no longer satisfy it): like an expired session, a fresh login decides.
          if (source === 'header') return unauthorized('invalid_token');
          invalidCookie = true;
          continue;
        }
        if (allows(decision)) {
          if (decision.decision === 'bypass') return noIdentity();
          return { assertion: token, email: claims.email ?? null, dropAuthorization };
        }
        deniedByIdentity = true;
        continue;
      }
      // Another app's token: a linked token (flow 1), or a SaaS access token (flow 2). A cookie
      // is never one: it may be a sibling path app's session on the same host.
      if (source === 'cookie') continue;
      const linkedFrom = linkedSource(state.table, verified);
      if (linkedFrom && this.revoked(config, verified.claims, linkedFrom))
        return unauthorized('invalid_token');
      const decision = linkedFrom
        ? this.rememberedDecision(verified, app, base, () =>
            app.policies.evaluate({ ...base, linkedAppUid: linkedFrom.id }),
          )
        : null;
      if (decision && decision.decision === 'bypass') return noIdentity();
      if (decision && decision.decision === 'non_identity') {
        this.linkedSeen(app, linkedFrom!, verified, host, base);
        return this.linkedGrant(app, linkedFrom!, verified, nowSeconds, dropAuthorization);
      }
      deniedByNonIdentity = true;
    }

    if (deniedByIdentity) return this.forbidden(app, browser, 'identity');
    if (deniedByNonIdentity) return this.forbidden(app, browser, 'non_identity');
    // No usable credential: bypass (and Service Auth open to everyone) may still let it through.
    const open = app.policies.evaluate(base);
    if (open.decision === 'bypass' || open.decision === 'non_identity') return noIdentity();
    if (app.serviceAuth401Redirect) return unauthorized(null);
    if (!browser) return unauthorized(invalidCookie ? 'invalid_token' : null);
    return this.loginRedirect(app, headers, host, target.forwardPath + target.query);
  }

  /** Spec §4.1 step 2: 302 to the team domain's login for this app host, back to `redirectUrl` after. */
  private loginRedirect(app: ProxyApp, headers: ScannedHeaders, host: string, redirectUrl: string): Reply {
    const login = new URL(`${this.options.teamDomain}/cdn-cgi/access/login/${host}`);
    login.searchParams.set('kid', app.aud);
    login.searchParams.set('redirect_url', redirectUrl);
    // Binds the coming hand-off to this browser (src/keys/app-session.ts, spec §4.1 step 6).
    const handOff = beginHandOff(headers.cookie, this.publicScheme === 'https');
    login.searchParams.set('meta', handOff.meta);
    return {
      status: 302,
      headers: { location: login.toString(), 'cache-control': 'no-store', 'set-cookie': handOff.cookie },
      body: '',
    };
  }

  /**
   * The bearer token if the Authorization header carries one Gatehouse issued (its unverified
   * `iss` is the team domain or one of its SaaS issuers); null when it is someone else's and
   * belongs to the origin; 'invalid' when the header is repeated.
   */
  private gatehouseBearer(values: readonly string[]): string | null | 'invalid' {
    if (values.length === 0) return null;
    const tokens = values.map((value) => BEARER.exec(value)?.[1]).filter((token) => token !== undefined);
    if (tokens.length === 0) return null;
    const ours = tokens.filter((token) => this.issuedHere(token));
    if (ours.length === 0) return null;
    return values.length === 1 ? ours[0]! : 'invalid';
  }

  private issuedHere(token: string): boolean {
    const payload = token.split('.')[1];
    if (!payload || payload.length > 8192) return false;
    try {
      const iss = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { iss?: unknown }).iss;
      const team = this.options.teamDomain;
      return typeof iss === 'string' && (iss === team || iss.startsWith(`${team}/cdn-cgi/access/sso/oidc/`));
    } catch {
      return false;
    }
  }

  /**
   * Decision 3: tokens issued before `revoke_tokens` on the app, or before the user's revocation.
   * `iat` has one-second granularity and revocation times are floored to the second, so a token
   * issued in the same second as the revocation is refused too: it may predate it. (A login in
   * that same second after the revocation is refused for at most that second.)
   */
  private revoked(config: ProxyConfig, claims: { iat: number; sub: string }, app: ProxyApp): boolean {
    if (app.tokensRevokedAt !== null && claims.iat <= app.tokensRevokedAt) return true;
    const userRevokedAt = config.userRevocations.get(claims.sub);
    return userRevokedAt !== undefined && claims.iat <= userRevokedAt;
  }

  /** Spec §4.5 `last_seen_at`, and a log row per token, app and outcome (spec §6: non-identity events). */
  private serviceTokenSeen(
    app: ProxyApp,
    tokenId: string,
    base: RequestContext,
    host: string,
    allowed: boolean,
  ): void {
    const events = this.options.events;
    if (!events) return;
    events.serviceTokenUsed(tokenId);
    events.accessRequest(`s:${tokenId}:${app.id}:${allowed}`, () => ({
      ...nonIdentityRow(app, host, { ...base, serviceTokenId: tokenId }),
      action: 'service_token',
      allowed,
      serviceTokenId: tokenId,
    }));
  }

  /** Spec §5.3: the log records the user behind a linked token, not the calling app. */
  private linkedSeen(
    app: ProxyApp,
    from: ProxyApp,
    verified: VerifiedToken,
    host: string,
    base: RequestContext,
  ): void {
    const { events } = this.options;
    if (!events) return;
    const { claims } = verified;
    events.accessRequest(`l:${verified.digest}:${app.id}`, () => ({
      ...nonIdentityRow(app, host, { ...base, linkedAppUid: from.id }),
      action: 'linked_app_token',
      allowed: true,
      userEmail: typeof claims.email === 'string' ? claims.email : null,
      userId: claims.sub || null,
      connection: `linked:${from.id}`,
    }));
  }

  /**
   * `appPath` (null in strict mode, which issues no cookie): spec §4.5 "Access sends the
   * service-token JWT to the origin and (unless strict mode is on) returns a `CF_Authorization`
   * cookie to the client" — the same JWT, so the cookie alone authenticates later requests.
   */
  private serviceGrant(
    app: ProxyApp,
    clientId: string,
    tokenId: string,
    now: number,
    appPath: string | null,
  ): Grant | Promise<Grant> {
    // Spec §4.3: the service-token JWT has `common_name` = client_id, `sub: ""` and no email.
    const entry = this.assertions.entry(`s:${tokenId}:${app.aud}`, now + app.sessionDurationSeconds, () => ({
      type: 'app',
      aud: [app.aud],
      common_name: clientId,
      sub: '',
    }));
    return whenSigned(entry, (assertion) => {
      if (appPath === null) return { assertion, email: null, dropAuthorization: false };
      // The cookie header (a kilobyte) is built once per minted assertion, app and app path.
      let cookie = this.serviceCookies.get(entry);
      if (cookie?.app !== app || cookie.appPath !== appPath) {
        const secure = this.publicScheme === 'https';
        const header = appCookieHeader(app, appPath, secure, assertion, entry.expiresAt);
        cookie = { app, appPath, header };
        this.serviceCookies.set(entry, cookie);
      }
      return { assertion, email: null, dropAuthorization: false, setCookie: cookie.header };
    });
  }

  /**
   * The decision for a request carrying this app's own token: a user's session re-checked
   * against the policy that admitted it at login (src/policy/session.ts), or a session a service
   * token started. Null when the token no longer proves enough (a fresh login decides).
   */
  private sessionDecision(
    config: ProxyConfig,
    app: ProxyApp,
    verified: VerifiedToken,
    claims: AppTokenClaims,
    base: RequestContext,
    nowMs: number,
  ): Decision | null {
    if (claims.sub === '' && typeof claims.common_name === 'string') {
      return this.serviceSession(config, app, claims.common_name, base, nowMs);
    }
    return this.rememberedDecision(verified, app, base, () => {
      const admitted = admittedBy(claims);
      if (!admitted) return null;
      const identity: Identity =
        claims.email !== undefined ? { email: claims.email, userUid: claims.sub } : { userUid: claims.sub };
      return app.policies.evaluateSession({ ...base, identity }, admitted);
    });
  }

  /**
   * `decide()` for a credential at `app` from a client, remembered with the credential and reused
   * while the client's facts are the same. The outcome depends on nothing else: the compiled app
   * (a new object when the configuration changes), the credential and the client's address,
   * country and certificate; the engine reads no clock for these (a certificate's dates are
   * checked per request by verifiedClientCertificate). Revocations are checked before, per request.
   */
  private rememberedDecision<D extends Decision | null>(
    credential: VerifiedToken | ServiceTokenRecord,
    app: ProxyApp,
    base: RequestContext,
    decide: () => D,
  ): D {
    const last = this.decisions.get(credential) as RememberedDecision<D> | undefined;
    if (
      last !== undefined &&
      last.app === app &&
      last.ip === base.clientIp &&
      last.country === base.country &&
      last.mtls === base.mtls
    ) {
      return last.decision;
    }
    const decision = decide();
    this.decisions.set(credential, {
      app,
      ip: base.clientIp,
      country: base.country,
      mtls: base.mtls,
      decision,
    });
    return decision;
  }

  /**
   * A session a service token started (its JWT as the app cookie): it lasts while the token is
   * still enabled and unexpired and a Service Auth policy still admits it; deleting, disabling or
   * expiring the token ends it (spec §4.5 "Deleting a token revokes it").
   */
  private serviceSession(
    config: ProxyConfig,
    app: ProxyApp,
    clientId: string,
    base: RequestContext,
    nowMs: number,
  ): Decision | null {
    const record = config.serviceTokens.get(clientId);
    if (!record || !serviceTokenUsable(record, nowMs)) return null;
    const decision = this.serviceDecision(app, record, base);
    return decision.decision === 'non_identity' || decision.decision === 'bypass' ? decision : null;
  }

  /** The app's decision for a request the service token `record` authenticated (remembered per token record). */
  private serviceDecision(app: ProxyApp, record: ServiceTokenRecord, base: RequestContext): Decision {
    return this.rememberedDecision(record, app, base, () =>
      app.policies.evaluate({ ...base, serviceTokenId: record.id }),
    );
  }

  /** Decision 1: a fresh token for this app, the same identity, `exp` no later than the presented one. */
  private linkedGrant(
    app: ProxyApp,
    sourceApp: ProxyApp,
    verified: VerifiedToken,
    now: number,
    dropAuthorization: boolean,
  ): Grant | Promise<Grant> {
    const { claims } = verified;
    const expiresAt = Math.min(claims.exp, now + app.sessionDurationSeconds);
    const entry = this.assertions.entry(`l:${verified.digest}:${app.aud}`, expiresAt, () => {
      const identity: Record<string, unknown> = { type: 'app', aud: [app.aud], sub: claims.sub };
      for (const name of ['email', 'identity_nonce', 'country', 'common_name'] as const) {
        if (typeof claims[name] === 'string') identity[name] = claims[name];
      }
      identity.linked_app_uid = sourceApp.id;
      return identity;
    });
    const email = typeof claims.email === 'string' ? claims.email : null;
    return whenSigned(entry, (assertion) => ({ assertion, email, dropAuthorization }));
  }

  private forbidden(app: ProxyApp, browser: boolean, phase: 'identity' | 'non_identity'): Reply {
    const url =
      phase === 'identity' ? app.customDenyUrl : (app.customNonIdentityDenyUrl ?? app.customDenyUrl);
    if (browser && url)
      return { status: 302, headers: { location: url, 'cache-control': 'no-store' }, body: '' };
    if (browser) return htmlReply(403, app.customDenyMessage ?? undefined);
    return jsonReply(403, { error: 'access_denied', message: 'no Access policy allows this request' });
  }

  /** Headers for the origin: the client's filtered headers plus Gatehouse's own. */
  private originHeaders(
    headers: ScannedHeaders,
    cookie: string | null,
    grant: Grant,
    client: ClientFacts,
    host: string,
    httpHostHeader: string | null,
  ): string[] {
    const { ip } = client;
    const out = headers.forward;
    out.push('host', httpHostHeader ?? headers.host ?? host);
    if (!grant.dropAuthorization) for (const value of headers.authorization) out.push('authorization', value);
    if (cookie !== null) out.push('cookie', cookie);
    out.push('x-forwarded-for', ip, 'x-forwarded-proto', this.publicScheme, 'x-forwarded-host', host);
    out.push('cf-connecting-ip', ip);
    // Cloudflare tells origins the client's country; only a configured source's answer is sent.
    if (client.country !== undefined) out.push('cf-ipcountry', client.country);
    if (grant.assertion) out.push('cf-access-jwt-assertion', grant.assertion);
    if (grant.email) out.push('cf-access-authenticated-user-email', grant.email);
    return out;
  }

  private endpointContext(
    state: RequestState,
    req: http.IncomingMessage,
    headers: ScannedHeaders,
    host: string,
    route: Route,
    target: RequestTarget,
  ) {
    return {
      req,
      headers,
      host,
      route: route as Route & { app: ProxyApp },
      target,
      ip: clientIp(req),
      teamDomain: this.options.teamDomain,
      secure: this.publicScheme === 'https',
      tokens: this.tokens,
      revoked: (claims: { iat: number; sub: string }) => this.revoked(state.config, claims, route.app!),
    };
  }
}

/**
 * The policy that admitted the user, from the claims the login writes into app tokens
 * (`policy_id`, `policy_precedence`); null for a token without them (not a login's session).
 */
function admittedBy(claims: AppTokenClaims): AdmittedBy | null {
  const { policy_id: policyId, policy_precedence: precedence } = claims;
  if (typeof policyId !== 'string' || policyId.length === 0 || policyId.length > 64) return null;
  if (typeof precedence !== 'number' || !Number.isSafeInteger(precedence)) return null;
  return { policyId, precedence };
}

/** What every non-identity access-log row says of the request: where, from where, and why. */
function nonIdentityRow(app: ProxyApp, host: string, context: RequestContext) {
  return {
    ipAddress: context.clientIp ?? null,
    country: context.country ?? null,
    policyTrace: explainFor(app, context),
    appUid: app.id,
    appDomain: host,
    appType: app.type,
    nonIdentity: true,
  };
}

/**
 * The logged decision's explanation (src/policy/audit-trace.ts). The row is built only when the
 * recorder keeps it (once per credential, app and outcome a minute), so the traced evaluation,
 * which the hot path never runs, is paid for at most that often.
 */
function explainFor(app: ProxyApp, context: RequestContext): AuditTrace | null {
  return auditTrace(app.policies.evaluate(context, { trace: true }));
}

function allows(decision: Decision): boolean {
  return (
    decision.decision === 'allow' || decision.decision === 'non_identity' || decision.decision === 'bypass'
  );
}

/** What minted assertions depend on in a configuration (per app: AUD, session length, `revoke_tokens`). */
function assertionState(config: ProxyConfig): string {
  return config.apps
    .map((app) => `${app.aud}:${app.sessionDurationSeconds}:${app.tokensRevokedAt}`)
    .join('|');
}

/** What revocation depends on in a configuration, as one comparable string. */
function revocationState(config: ProxyConfig): string {
  const parts: string[] = [];
  for (const app of config.apps) parts.push(`a${app.id}:${app.tokensRevokedAt}`);
  for (const [sub, at] of config.userRevocations) parts.push(`u${sub}:${at}`);
  for (const token of config.serviceTokens.values()) {
    const previous = token.previousSecretDigest?.toString('hex');
    parts.push(
      `s${token.id}:${token.enabled}:${token.expiresAtMs}:${token.secretDigest.toString('hex')}:${previous}`,
    );
  }
  return parts.join('|');
}

/** The app a linked token was issued for (decision 1: an app token; decision 2: a SaaS access token). */
function linkedSource(table: RoutingTable, verified: VerifiedToken): ProxyApp | undefined {
  if (verified.kind === 'access') return table.appsByClientId.get(verified.claims.client_id);
  for (const aud of verified.claims.aud) {
    const app = table.appsByAud.get(aud);
    if (app) return app;
  }
  return undefined;
}

/** The request facts every policy evaluation of this request starts from. */
function requestContext(client: ClientFacts, nowMs: number): RequestContext {
  const context: { -readonly [K in keyof RequestContext]: RequestContext[K] } = {
    now: nowMs,
    clientIp: client.ip,
  };
  if (client.country !== undefined) context.country = client.country;
  if (client.mtls !== undefined) context.mtls = client.mtls;
  return context;
}

function noIdentity(): Grant {
  return { assertion: null, email: null, dropAuthorization: false };
}

/** Decision 5: 401, with RFC 6750 `invalid_token` when a presented token failed. */
/** A 401 at a managed-OAuth app carries the app's challenge instead (RFC 9728 §5.1). */
function withManagedChallenge(reply: Reply, managed: ManagedOAuthOutcome | null): Reply {
  if (reply.status !== 401 || managed?.kind !== 'continue') return reply;
  const invalid = String(reply.headers['www-authenticate']).includes('invalid_token');
  return {
    ...reply,
    headers: { ...reply.headers, 'www-authenticate': managed.challenge(invalid ? 'invalid_token' : null) },
  };
}

function unauthorized(error: 'invalid_token' | null): Reply {
  return {
    status: 401,
    headers: {
      'www-authenticate': error ? `Bearer error="${error}"` : 'Bearer',
      'content-type': 'application/json',
      'cache-control': 'no-store',
    },
    body: JSON.stringify({ error: error ?? 'unauthorized', message: 'authentication required' }),
  };
}

/** The socket's peer: no proxy in front of Gatehouse is trusted, so forwarded-for headers are not read. */
function clientIp(req: http.IncomingMessage): string {
  const address = req.socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
