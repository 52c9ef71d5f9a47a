// The team domain's login (spec §4.1–4.2, §4.6): `/cdn-cgi/access/login/<app host>`, the IdP
// picker, one-time PIN, the OIDC/GitHub callback, the organisation session, the app token and
// its hand-off to `<app host>/cdn-cgi/access/authorized`, get-identity and logout.
//
// CSRF and login CSRF: every step after the first names its flow by an unguessable token (form
// field, or OIDC `state`) that is valid only together with the CF_Session cookie it was created
// with. Session fixation: the organisation session is always a new one, minted after the login.
import { createHmac, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Gateway } from '../gateway.ts';
import { identityProviderSource, TableAccessRequestLog, TableUserDirectory } from '../identity/directory.ts';
import {
  createPinMailer,
  generatePin,
  MAX_PIN_ATTEMPTS,
  MAX_PINS_PER_EMAIL,
  MAX_PINS_PER_IP,
  PIN_LIFETIME_MS,
  PIN_RATE_WINDOW_MS,
  type PinMailer,
  pinHash,
  pinMatches,
} from '../identity/otp.ts';
import { type LoginFlow, type LoginSession, LoginState } from '../identity/state.ts';
import type {
  AccessRequestLog,
  IdentityProvider,
  IdentityProviderSource,
  LoginIdentity,
  UserDirectory,
} from '../identity/types.ts';
import {
  codeVerifierFor,
  GITHUB_DOTCOM,
  type GitHubEndpoints,
  isEmail,
  UpstreamError,
  type UpstreamFlow,
  upstreamFor,
} from '../identity/upstream.ts';
import { mintJwt, TokenError, verifyJwt } from '../keys/jwt.ts';
import type { Logger } from '../logging.ts';
import { evaluate, parseGoDuration } from '../policy/index.ts';
import type { SnapshotApp } from '../snapshot/snapshot.ts';
import type { SelfHostedApp } from '../store/repositories/apps.ts';
import { IdentityProviderRepository } from '../store/repositories/identity-providers.ts';
import { FLOW_COOKIE, FLOW_COOKIE_SECONDS, ORG_COOKIE, readCookies, teamCookie } from './cookies.ts';
import {
  type Branding,
  blockPage,
  emailPage,
  errorPage,
  logoSource,
  type Page,
  pickerPage,
  pinPage,
  signedOutPage,
} from './pages.ts';
import { appServesHost, parseAppHost, safeRedirectPath } from './redirects.ts';

export interface LoginOptions {
  /** GitHub's web and API origins; tests point them at a local server. */
  github?: GitHubEndpoints;
  /** How PINs are sent; by default SMTP from the settings (or the development log). */
  mailer?: PinMailer;
  /** Part B's implementations, once they exist (src/identity/directory.ts holds the interim ones). */
  users?: UserDirectory;
  accessRequests?: AccessRequestLog;
  identityProviders?: IdentityProviderSource;
}

type AppEntry = SnapshotApp & { app: SelfHostedApp };

/** 24h: the default of every session (spec §2.3). */
const DEFAULT_SESSION_MS = 86_400_000;
/** Cloudflare's CF-IPCountry value when the country is unknown; Gatehouse has no GeoIP data. */
const UNKNOWN_COUNTRY = 'XX';
const FLOW_TOKEN = /^[A-Za-z0-9_-]{43}$/;
const AUD = /^[0-9a-f]{64}$/;
const META = /^[A-Za-z0-9_-]{16,128}$/;

class LoginError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function loginRoutes(gateway: Gateway, logger: Logger, options: LoginOptions = {}) {
  const { settings, account, keys } = gateway;
  const team = new URL(settings.teamDomain);
  const teamPort = team.port;
  const secure = team.protocol === 'https:';
  const accountId = account.accountId;
  const state = new LoginState(gateway.store, accountId);
  const users = options.users ?? new TableUserDirectory(gateway.store, accountId);
  const accessRequests = options.accessRequests ?? new TableAccessRequestLog(gateway.store, accountId);
  const providers =
    options.identityProviders ??
    identityProviderSource(new IdentityProviderRepository(gateway.store), accountId, gateway.masterKey);
  const mailer = options.mailer ?? createPinMailer(settings.smtp, logger);
  const github = options.github ?? GITHUB_DOTCOM;
  const callbackUri = `${settings.teamDomain}/cdn-cgi/access/callback`;

  const branding = (): Branding => {
    const org = gateway.snapshot.current().account;
    return { organisation: org.name, logoUrl: logoSource(org.loginDesign.logo_path) };
  };
  const send = (reply: FastifyReply, page: Page) =>
    reply.code(page.status).headers(page.headers).send(page.html);
  const fail = (reply: FastifyReply, error: LoginError) =>
    send(reply, errorPage(branding(), error.status, error.message));
  const clientIp = (request: FastifyRequest) => request.ip.replace(/^::ffff:/, '');
  const rayId = () => randomBytes(8).toString('hex');

  /** The app the login URL names: its AUD (`kid`) and a hostname of that same app. */
  function resolveApp(kid: unknown, hostParam: string): { entry: AppEntry; host: string } {
    const host = parseAppHost(hostParam, teamPort);
    if (typeof kid !== 'string' || !AUD.test(kid) || !host)
      throw new LoginError(400, 'The sign-in link is not valid.');
    const entry = gateway.snapshot.current().apps.find((candidate) => candidate.app.aud === kid);
    if (entry?.app.type !== 'self_hosted' || !appServesHost(entry.app, host.hostname)) {
      throw new LoginError(400, 'The sign-in link does not name a known application.');
    }
    return { entry: entry as AppEntry, host: host.host };
  }

  function appById(id: string): AppEntry {
    const entry = gateway.snapshot.current().appsById.get(id);
    if (entry?.app.type !== 'self_hosted') throw new LoginError(400, 'The application no longer exists.');
    return entry as AppEntry;
  }

  /** The IdPs this app offers: its `allowed_idps`, or every IdP when the list is empty (spec §2.1). */
  async function idpsFor(app: SelfHostedApp): Promise<IdentityProvider[]> {
    const all = await providers.list();
    const allowed = app.config.allowed_idps;
    return all.filter((idp) => allowed.length === 0 || allowed.includes(idp.id));
  }

  /** The organisation session named by the team domain's cookie, if it is live. */
  async function currentSession(request: FastifyRequest): Promise<LoginSession | null> {
    const token = readCookies(request.headers.cookie).get(ORG_COOKIE);
    if (!token) return null;
    try {
      const { payload } = await verifyJwt(keys, token, {
        issuer: settings.teamDomain,
        audience: accountId,
        requiredClaims: ['sub', 'jti'],
      });
      if (payload.type !== 'org' || typeof payload.jti !== 'string') return null;
      const session = await state.getSession(payload.jti);
      const now = new Date().toISOString();
      if (!session || session.userId !== payload.sub || session.revokedAt || session.expiresAt <= now)
        return null;
      const user = await users.get(session.userId);
      // revoke_user and logout end every session created before them (decision 3).
      if (!user || (user.revokedAt && session.createdAt <= user.revokedAt)) return null;
      return session;
    } catch (error) {
      if (error instanceof TokenError) return null;
      throw error;
    }
  }

  function flowCookieSecret(request: FastifyRequest): string | null {
    const value = readCookies(request.headers.cookie).get(FLOW_COOKIE);
    return value && FLOW_TOKEN.test(value) ? value : null;
  }

  /** The flow a POST or callback names, checked against this browser's CF_Session. */
  async function loadFlow(
    request: FastifyRequest,
    token: unknown,
  ): Promise<{ flow: LoginFlow; browser: string }> {
    const browser = flowCookieSecret(request);
    const flow =
      browser && typeof token === 'string' && FLOW_TOKEN.test(token)
        ? await state.findFlow(token, browser, new Date())
        : null;
    if (!flow || !browser)
      throw new LoginError(
        400,
        'This sign-in attempt has expired or was started elsewhere. Start again from the application.',
      );
    return { flow, browser };
  }

  function upstreamFlow(token: string, flow: LoginFlow, browser: string): UpstreamFlow {
    return {
      state: token,
      nonce: flow.nonce ?? '',
      codeVerifier: codeVerifierFor(browser, flow.id),
      redirectUri: callbackUri,
    };
  }

  /** Starts the chosen IdP: the PIN email form, or a redirect to the upstream IdP. */
  async function startIdp(
    reply: FastifyReply,
    token: string,
    flow: LoginFlow,
    browser: string,
    idp: IdentityProvider,
    entry: AppEntry,
  ) {
    if (idp.type === 'onetimepin') {
      await state.chooseIdp(flow.id, idp.id, null);
      return send(reply, emailPage(branding(), entry.app.name, token));
    }
    const nonce = randomBytes(32).toString('base64url');
    await state.chooseIdp(flow.id, idp.id, nonce);
    try {
      const url = await upstreamFor(idp, github).authorizationUrl(
        upstreamFlow(token, { ...flow, nonce }, browser),
      );
      return reply.code(302).header('cache-control', 'no-store').header('location', url.href).send();
    } catch (error) {
      if (error instanceof UpstreamError) throw new LoginError(502, error.message);
      throw error;
    }
  }

  function sessionMs(duration: string | undefined): number {
    const ms = duration === undefined ? null : parseGoDuration(duration);
    return ms ?? DEFAULT_SESSION_MS;
  }

  /**
   * Evaluates the app's policies for the identity and, when allowed, answers with the hand-off
   * of a fresh app token (spec §4.1 steps 5–6); otherwise the block page or custom_deny_url.
   */
  async function handOff(
    request: FastifyRequest,
    reply: FastifyReply,
    input: { entry: AppEntry; host: string; redirectUrl: string; meta: string | null; session: LoginSession },
  ) {
    const { entry, session } = input;
    const identity = { ...session.identity, userUid: session.userId };
    const now = Date.now();
    const decision = entry.compiled
      ? evaluate(entry.compiled, { now, identity, clientIp: clientIp(request) })
      : { decision: 'deny' as const, policy: null };
    const allowed = decision.decision !== 'deny';
    await accessRequests.record({
      action: 'login',
      allowed,
      userEmail: identity.email,
      userId: session.userId,
      ipAddress: clientIp(request),
      appUid: entry.app.id,
      appDomain: input.host,
      appType: entry.app.type,
      connection: identity.idp.type,
      idpId: identity.idp.id,
      country: UNKNOWN_COUNTRY,
      rayId: rayId(),
    });
    if (!allowed) {
      const url = entry.app.config.custom_deny_url;
      if (url) return reply.code(302).header('cache-control', 'no-store').header('location', url).send();
      return send(reply, blockPage(branding(), entry.app.config.custom_deny_message ?? null));
    }
    // Policy session, else app session, else 24h (spec §2.3).
    const lifetime = decision.policy?.sessionDurationMs ?? sessionMs(entry.app.config.session_duration);
    const token = await mintJwt(
      keys,
      {
        type: 'app',
        aud: [entry.app.aud],
        email: identity.email,
        sub: session.userId,
        identity_nonce: session.identityNonce,
        country: UNKNOWN_COUNTRY,
      },
      { issuer: settings.teamDomain, expiresAt: Math.floor((now + lifetime) / 1000) },
    );
    const target = new URL(`${team.protocol}//${input.host}/cdn-cgi/access/authorized`);
    target.searchParams.set('token', token);
    target.searchParams.set('redirect_url', input.redirectUrl);
    // Ties the hand-off to the CF_AppSession cookie the app host set before sending the browser
    // here (spec §4.1 step 6): the app host accepts the token only with its own cookie's MAC.
    if (input.meta)
      target.searchParams.set(
        'app_session',
        createHmac('sha256', input.meta).update(token).digest('base64url'),
      );
    return reply
      .code(302)
      .header('cache-control', 'no-store')
      .header('referrer-policy', 'no-referrer')
      .header('location', target.href)
      .send();
  }

  /** After a successful upstream login: the user, a new organisation session, then the hand-off. */
  async function completeLogin(
    request: FastifyRequest,
    reply: FastifyReply,
    flow: LoginFlow,
    identity: LoginIdentity,
  ) {
    const entry = appById(flow.appId);
    const now = new Date();
    const user = await users.upsertOnLogin({
      email: identity.email,
      ...(identity.name !== undefined && { name: identity.name }),
      at: now.toISOString(),
    });
    const orgMs = sessionMs(gateway.snapshot.current().account.sessionDuration);
    const session = await state.createSession({
      userId: user.id,
      identity,
      identityNonce: randomBytes(16).toString('hex'),
      ip: clientIp(request),
      now,
      expiresAt: new Date(now.getTime() + orgMs),
    });
    const expiresAt = Math.floor((now.getTime() + orgMs) / 1000);
    const orgToken = await mintJwt(
      keys,
      { type: 'org', aud: [accountId], sub: user.id, email: identity.email, jti: session.id },
      { issuer: settings.teamDomain, expiresAt },
    );
    reply.header('set-cookie', [
      teamCookie(ORG_COOKIE, orgToken, { expiresAt, secure }),
      // The flow secret has done its job; a new login gets a new one.
      teamCookie(FLOW_COOKIE, '', { expiresAt: 0, secure, path: '/cdn-cgi/access' }),
    ]);
    return handOff(request, reply, {
      entry,
      host: flow.appHost,
      redirectUrl: flow.redirectUrl,
      meta: flow.meta,
      session,
    });
  }

  async function recordFailure(
    request: FastifyRequest,
    flow: LoginFlow | null,
    idp: IdentityProvider | null,
    email: string | null,
  ) {
    const entry = flow ? gateway.snapshot.current().appsById.get(flow.appId) : undefined;
    await accessRequests.record({
      action: 'login',
      allowed: false,
      userEmail: email,
      userId: null,
      ipAddress: clientIp(request),
      appUid: entry?.app.id ?? null,
      appDomain: flow?.appHost ?? null,
      appType: entry?.app.type ?? null,
      connection: idp?.type ?? null,
      idpId: idp?.id ?? null,
      country: UNKNOWN_COUNTRY,
      rayId: rayId(),
    });
  }

  return async function plugin(app: FastifyInstance) {
    // Login forms only; small bodies. Registered in this plugin's scope, not for the API.
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 8192 },
      (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    app.setErrorHandler((error, _request, reply) => {
      if (error instanceof LoginError) return fail(reply, error);
      const status = (error as { statusCode?: number }).statusCode;
      if (status && status >= 400 && status < 500)
        return fail(reply, new LoginError(400, 'The request could not be understood.'));
      logger.error({ err: error }, 'login failed');
      return fail(reply, new LoginError(502, 'Something went wrong. Try again in a moment.'));
    });

    app.get<{ Params: { host: string }; Querystring: Record<string, string | undefined> }>(
      '/cdn-cgi/access/login/:host',
      async (request, reply) => {
        const { entry, host } = resolveApp(request.query.kid, request.params.host);
        const redirectUrl = safeRedirectPath(request.query.redirect_url);
        const meta = request.query.meta && META.test(request.query.meta) ? request.query.meta : null;
        const session = await currentSession(request);
        const revokedAt = entry.app.tokensRevokedAt;
        // With a live organisation session the app token is minted silently, after the
        // policies are evaluated again (spec §2.3, §4.1 step 7) — unless revoke_tokens on this
        // app came after the session began.
        if (session && !(revokedAt && session.createdAt <= revokedAt)) {
          await state.touchSession(session.id, new Date());
          return handOff(request, reply, { entry, host, redirectUrl, meta, session });
        }
        const idps = await idpsFor(entry.app);
        if (idps.length === 0)
          throw new LoginError(400, 'No sign-in method is configured for this application.');
        const browser = flowCookieSecret(request) ?? randomBytes(32).toString('base64url');
        const token = randomBytes(32).toString('base64url');
        await state.createFlow({
          token,
          browser,
          appId: entry.app.id,
          appHost: host,
          redirectUrl,
          meta,
          ip: clientIp(request),
          now: new Date(),
        });
        reply.header(
          'set-cookie',
          teamCookie(FLOW_COOKIE, browser, {
            expiresAt: Math.floor(Date.now() / 1000) + FLOW_COOKIE_SECONDS,
            secure,
            path: '/cdn-cgi/access',
          }),
        );
        const autoRedirect =
          entry.app.config.auto_redirect_to_identity ||
          gateway.snapshot.current().account.autoRedirectToIdentity;
        if (autoRedirect && idps.length === 1) {
          const flow = (await state.findFlow(token, browser, new Date()))!;
          return startIdp(reply, token, flow, browser, idps[0]!, entry);
        }
        return send(reply, pickerPage(branding(), entry.app.name, token, idps, formTargets(idps)));
      },
    );

    /** Origins the picker's forms continue to (CSP form-action): the upstream IdPs. */
    function formTargets(idps: readonly IdentityProvider[]): string[] {
      const origins = new Set<string>();
      for (const idp of idps) {
        if (idp.type === 'github') origins.add(new URL(github.web).origin);
        const auth = idp.config.auth_url;
        if (idp.type === 'oidc' && typeof auth === 'string' && URL.canParse(auth))
          origins.add(new URL(auth).origin);
      }
      return [...origins];
    }

    app.post<{ Body: Record<string, string | undefined> }>('/cdn-cgi/access/idp', async (request, reply) => {
      const body = request.body ?? {};
      const { flow, browser } = await loadFlow(request, body.flow);
      const entry = appById(flow.appId);
      const idp = (await idpsFor(entry.app)).find((candidate) => candidate.id === body.idp);
      if (!idp) throw new LoginError(400, 'That sign-in method is not available for this application.');
      return startIdp(reply, body.flow!, flow, browser, idp, entry);
    });

    app.post<{ Body: Record<string, string | undefined> }>('/cdn-cgi/access/otp', async (request, reply) => {
      const body = request.body ?? {};
      const { flow, browser } = await loadFlow(request, body.flow);
      const entry = appById(flow.appId);
      const idp = (await idpsFor(entry.app)).find((candidate) => candidate.id === flow.idpId);
      if (idp?.type !== 'onetimepin') throw new LoginError(400, 'Choose a sign-in method first.');
      const email = (body.email ?? '').trim().toLowerCase();
      if (!isEmail(email))
        return send(reply, emailPage(branding(), entry.app.name, body.flow!, 'Enter a valid email address.'));
      const now = new Date();
      const counts = await state.pinRequestsSince(
        email,
        clientIp(request),
        new Date(now.getTime() - PIN_RATE_WINDOW_MS),
      );
      if (counts.email >= MAX_PINS_PER_EMAIL || counts.ip >= MAX_PINS_PER_IP) {
        throw new LoginError(429, 'Too many codes were requested. Wait a few minutes and try again.');
      }
      // A PIN goes only to an address the app's policies would let in; the page says the same
      // either way, and mail is sent in the background so timing does not tell either.
      const identity: LoginIdentity = { email, idp: { id: idp.id, type: idp.type } };
      const allowed = entry.compiled
        ? evaluate(entry.compiled, { now: now.getTime(), identity, clientIp: clientIp(request) }).decision !==
          'deny'
        : false;
      const pin = generatePin();
      await state.setPin(flow.id, email, allowed ? pinHash(browser, flow.id, pin) : null, now);
      if (allowed) {
        mailer
          .send(email, pin, branding().organisation)
          .catch((error: unknown) => logger.error({ err: error }, 'could not send the one-time PIN email'));
      }
      const appOrigin = `${team.protocol}//${flow.appHost}`;
      return send(reply, pinPage(branding(), entry.app.name, body.flow!, email, appOrigin));
    });

    app.post<{ Body: Record<string, string | undefined> }>(
      '/cdn-cgi/access/otp/verify',
      async (request, reply) => {
        const body = request.body ?? {};
        const { flow, browser } = await loadFlow(request, body.flow);
        const entry = appById(flow.appId);
        const idp = (await idpsFor(entry.app)).find((candidate) => candidate.id === flow.idpId);
        if (idp?.type !== 'onetimepin' || !flow.pinEmail || !flow.pinSentAt) {
          throw new LoginError(400, 'Request a code first.');
        }
        const appOrigin = `${team.protocol}//${flow.appHost}`;
        const again = (message: string) =>
          send(reply, pinPage(branding(), entry.app.name, body.flow!, flow.pinEmail!, appOrigin, message));
        const attempts = await state.countPinAttempt(flow.id);
        const pin = body.pin ?? '';
        const expired = Date.parse(flow.pinSentAt) + PIN_LIFETIME_MS <= Date.now();
        const valid =
          attempts <= MAX_PIN_ATTEMPTS &&
          !expired &&
          /^\d{6}$/.test(pin) &&
          flow.pinHash !== null &&
          pinMatches(browser, flow.id, pin, flow.pinHash);
        if (!valid) {
          await recordFailure(request, flow, idp, flow.pinEmail);
          if (attempts >= MAX_PIN_ATTEMPTS || expired) {
            throw new LoginError(401, 'This code can no longer be used. Start again to get a new one.');
          }
          return again('That code is not valid. Check the email and try again.');
        }
        // Single use: only the request that consumes the flow logs in.
        if (!(await state.consumeFlow(flow.id, new Date())))
          throw new LoginError(401, 'This code has already been used.');
        return completeLogin(request, reply, flow, {
          email: flow.pinEmail,
          idp: { id: idp.id, type: idp.type },
        });
      },
    );

    app.get<{ Querystring: Record<string, string | undefined> }>(
      '/cdn-cgi/access/callback',
      async (request, reply) => {
        const { flow, browser } = await loadFlow(request, request.query.state);
        const entry = appById(flow.appId);
        const idp = (await idpsFor(entry.app)).find((candidate) => candidate.id === flow.idpId);
        if (!idp || idp.type === 'onetimepin')
          throw new LoginError(400, 'This sign-in attempt is not waiting for an identity provider.');
        // Consumed before the code is redeemed: a replayed callback finds no flow.
        if (!(await state.consumeFlow(flow.id, new Date())))
          throw new LoginError(400, 'This sign-in attempt was already used.');
        let identity: LoginIdentity;
        try {
          const url = new URL(request.url, settings.teamDomain);
          identity = await upstreamFor(idp, github).complete(
            url,
            upstreamFlow(request.query.state!, flow, browser),
          );
        } catch (error) {
          if (!(error instanceof UpstreamError)) throw error;
          logger.warn({ idp: idp.id, reason: error.message }, 'upstream login refused');
          await recordFailure(request, flow, idp, null);
          throw new LoginError(401, error.message);
        }
        return completeLogin(request, reply, flow, identity);
      },
    );

    app.get('/cdn-cgi/access/get-identity', async (request, reply) => {
      const session = await currentSession(request);
      reply.header('cache-control', 'no-store');
      if (!session)
        return reply.code(401).send({ error: 'unauthorized', message: 'no valid Access session' });
      return reply.send(identityDocument(session, accountId, clientIp(request)));
    });

    app.get('/cdn-cgi/access/logout', async (request, reply) => {
      const session = await currentSession(request);
      if (session) {
        const now = new Date();
        // Every session and token of the user, in every app, ends now (spec §4.6).
        await state.endSessions(session.userId, now);
        await users.revoke(session.userId, now.toISOString());
        await accessRequests.record({
          action: 'logout',
          allowed: true,
          userEmail: session.identity.email,
          userId: session.userId,
          ipAddress: clientIp(request),
          appUid: null,
          appDomain: null,
          appType: null,
          connection: session.identity.idp.type,
          idpId: session.identity.idp.id,
          country: UNKNOWN_COUNTRY,
          rayId: rayId(),
        });
      }
      reply.header('set-cookie', [
        teamCookie(ORG_COOKIE, '', { expiresAt: 0, secure }),
        teamCookie(FLOW_COOKIE, '', { expiresAt: 0, secure, path: '/cdn-cgi/access' }),
      ]);
      return send(reply, signedOutPage(branding()));
    });
  };
}

/** Cloudflare's get-identity document (spec §4.6) for an organisation session. */
export function identityDocument(session: LoginSession, accountId: string, ip: string) {
  const { identity } = session;
  return {
    email: identity.email,
    ...(identity.name !== undefined && { name: identity.name }),
    idp: { id: identity.idp.id, type: identity.idp.type },
    geo: { country: UNKNOWN_COUNTRY },
    user_uuid: session.userId,
    account_id: accountId,
    iat: Math.floor(Date.parse(session.createdAt) / 1000),
    ip,
    identity_nonce: session.identityNonce,
    auth_status: 'NONE',
    common_name: '',
    service_token_id: '',
    service_token_status: false,
    is_warp: false,
    is_gateway: false,
    device_id: '',
    devicePosture: {},
    device_sessions: {},
    ...(identity.amr && { amr: identity.amr }),
    ...(identity.oidcClaims && { oidc_fields: identity.oidcClaims }),
    ...(identity.github && { github: identity.github }),
    version: 1,
  };
}
