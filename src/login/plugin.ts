// The team domain's login (spec §4.1–4.2, §4.6): `/cdn-cgi/access/login/<app host>`, the IdP
// picker, one-time PIN, the OIDC/GitHub callback, the organisation session, the app token and
// its hand-off to `<app host>/cdn-cgi/access/authorized`, get-identity and logout.
//
// A login may also be made for the team domain itself (`/cdn-cgi/access/login?redirect_url=<path>`,
// src/login/org-session.ts): it ends on that team-domain path instead of an app hand-off.
//
// CSRF and login CSRF: every step after the first names its flow by an unguessable token (form
// field, or OIDC `state`) that is valid only together with the CF_Session cookie it was created
// with; the hand-off to the app host is bound to the app host's CF_AppSession cookie
// (src/keys/app-session.ts). Session fixation: the organisation session is always a new one,
// minted after the login.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Gateway } from '../gateway.ts';
import { createCountrySource } from '../geo/country.ts';
import { FIXED_IDENTITY_FIELDS } from '../identity/identity-document.ts';
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
import { listIdentityProviders } from '../identity/providers.ts';
import { endUserSessions, type LoginFlow, type LoginSession, LoginState } from '../identity/state.ts';
import type { IdentityProvider, LoginIdentity } from '../identity/types.ts';
import {
  codeVerifierFor,
  GITHUB_DOTCOM,
  type GitHubEndpoints,
  isEmail,
  UpstreamError,
  type UpstreamFlow,
  upstreamFor,
} from '../identity/upstream.ts';
import { DEFAULT_UPSTREAM_LIMITS, type UpstreamLimits } from '../identity/upstream-fetch.ts';
import { appSessionMac, META } from '../keys/app-session.ts';
import { mintJwt } from '../keys/jwt.ts';
import type { Logger } from '../logging.ts';
import { auditTrace, type Decision, parseGoDuration } from '../policy/index.ts';
import type { IdentityDecider } from '../policy-external/identity-decision.ts';
import type { SnapshotApp } from '../snapshot/snapshot.ts';
import type { AccessRequestEntry } from '../store/repositories/access-requests.ts';
import type { SelfHostedApp } from '../store/repositories/apps.ts';
import { verifiedClientCertificate } from '../tls/client-certificate.ts';
import { FLOW_COOKIE, FLOW_COOKIE_SECONDS, ORG_COOKIE, readCookies, teamCookie } from './cookies.ts';
import { liveSession, TEAM_RETURN_PARAM } from './org-session.ts';
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
import { appServesHost, isSafePath, parseAppHost, safeRedirectPath } from './redirects.ts';

export interface LoginOptions {
  /** GitHub's web and API origins; tests point them at a local server. */
  github?: GitHubEndpoints;
  /** How PINs are sent; by default SMTP from the settings (or the development log). */
  mailer?: PinMailer;
  /** Deadline and size cap of each upstream IdP call; tests shorten them. */
  upstreamLimits?: UpstreamLimits;
}

type AppEntry = SnapshotApp & { app: SelfHostedApp };

/** 24h: the default of every session (spec §2.3). */
const DEFAULT_SESSION_MS = 86_400_000;
/** Cloudflare's CF-IPCountry value when the country is unknown (no configured source knows it). */
const UNKNOWN_COUNTRY = 'XX';
const NO_POLICIES: Decision = { decision: 'deny', policy: null, trace: null };
const FLOW_TOKEN = /^[A-Za-z0-9_-]{43}$/;
const AUD = /^[0-9a-f]{64}$/;

class LoginError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * `decide` makes the identity-time decisions (src/policy-external/identity-decision.ts): identity
 * selectors, external_evaluation included, are checked when the login mints an app token.
 */
export function loginRoutes(
  gateway: Gateway,
  logger: Logger,
  decide: IdentityDecider,
  options: LoginOptions = {},
) {
  const { settings, account, keys } = gateway;
  const team = new URL(settings.teamDomain);
  const teamPort = team.port;
  const secure = team.protocol === 'https:';
  const accountId = account.accountId;
  const state = new LoginState(gateway.store, accountId);
  const mailer = options.mailer ?? createPinMailer(settings.smtp, logger);
  const github = options.github ?? GITHUB_DOTCOM;
  const limits = options.upstreamLimits ?? DEFAULT_UPSTREAM_LIMITS;
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
  const countryOf = createCountrySource(settings);
  const requestCountry = (request: FastifyRequest) => countryOf?.(clientIp(request), request.headers);
  /** The login request's non-identity facts: policies also check them when the app token is minted. */
  const requestFacts = (request: FastifyRequest, now: number) => {
    const mtls = verifiedClientCertificate(request.raw.socket, now);
    const country = requestCountry(request);
    return { clientIp: clientIp(request), ...(mtls && { mtls }), ...(country !== undefined && { country }) };
  };
  const redirect = (reply: FastifyReply, location: string) =>
    reply.code(302).header('cache-control', 'no-store').header('location', location).send();
  /** One row of the authentication log (spec §6). */
  const record = (request: FastifyRequest, entry: Omit<AccessRequestEntry, 'accountId' | 'ipAddress'>) =>
    gateway.repos.accessRequests.record({
      accountId,
      ipAddress: clientIp(request),
      country: requestCountry(request) ?? UNKNOWN_COUNTRY,
      ...entry,
    });

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

  /** The flow's app; null for a team-domain login. */
  function flowApp(flow: LoginFlow): AppEntry | null {
    if (flow.appId === null) return null;
    const entry = gateway.snapshot.current().appsById.get(flow.appId);
    if (entry?.app.type !== 'self_hosted') throw new LoginError(400, 'The application no longer exists.');
    return entry as AppEntry;
  }

  /** What the pages call the thing being signed in to. */
  const targetName = (entry: AppEntry | null) => entry?.app.name ?? branding().organisation;

  /**
   * The IdPs offered: the app's `allowed_idps`, or every IdP when the list is empty or the
   * login is the team domain's own (spec §2.1).
   */
  async function idpsFor(entry: AppEntry | null): Promise<IdentityProvider[]> {
    const all = await listIdentityProviders(gateway);
    const allowed = entry?.app.config.allowed_idps ?? [];
    return all.filter((idp) => allowed.length === 0 || allowed.includes(idp.id));
  }

  /** The organisation session named by the team domain's cookie, if it is live. */
  const currentSession = (request: FastifyRequest) => liveSession(gateway, state, request.headers.cookie);

  /** Where the browser goes when the form after the PIN posts: the app host or this origin. */
  const continueOrigin = (flow: LoginFlow) =>
    flow.appHost === null ? team.origin : `${team.protocol}//${flow.appHost}`;

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
    entry: AppEntry | null,
  ) {
    if (idp.type === 'onetimepin') {
      await state.chooseIdp(flow.id, idp.id, null);
      return send(reply, emailPage(branding(), targetName(entry), token));
    }
    const nonce = randomBytes(32).toString('base64url');
    await state.chooseIdp(flow.id, idp.id, nonce);
    try {
      const url = await upstreamFor(idp, github, limits).authorizationUrl(
        upstreamFlow(token, { ...flow, nonce }, browser),
      );
      return redirect(reply, url.href);
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
    input: { entry: AppEntry; host: string; redirectUrl: string; meta: string; session: LoginSession },
  ) {
    const { entry, session } = input;
    const identity = { ...session.identity, userUid: session.userId };
    const facts = requestFacts(request, Date.now());
    const decision = entry.compiled ? await decide(entry.compiled, { ...facts, identity }) : NO_POLICIES;
    const now = Date.now();
    const allowed = decision.decision !== 'deny';
    await record(request, {
      action: 'login',
      allowed,
      userEmail: identity.email,
      userId: session.userId,
      appUid: entry.app.id,
      appDomain: input.host,
      appType: entry.app.type,
      connection: identity.idp.type,
      idpId: identity.idp.id,
      policyTrace: auditTrace(decision),
    });
    if (!allowed) {
      const url = entry.app.config.custom_deny_url;
      if (url) return redirect(reply, url);
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
        country: facts.country ?? UNKNOWN_COUNTRY,
        // The admitting policy: the proxy re-checks its non-identity rules per request without
        // the identity selectors it cannot see (src/policy/session.ts, spec §3.3).
        ...(decision.policy && {
          policy_id: decision.policy.id,
          policy_precedence: decision.policy.precedence,
        }),
      },
      { issuer: settings.teamDomain, expiresAt: Math.floor((now + lifetime) / 1000) },
    );
    const target = new URL(`${team.protocol}//${input.host}/cdn-cgi/access/authorized`);
    target.searchParams.set('token', token);
    target.searchParams.set('redirect_url', input.redirectUrl);
    // Ties the hand-off to the CF_AppSession cookie the app host set before sending the browser
    // here (spec §4.1 step 6): the app host accepts the token only with its own cookie's MAC.
    target.searchParams.set('app_session', appSessionMac(input.meta, token));
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
    const entry = flowApp(flow);
    const now = new Date();
    const user = await gateway.repos.users.upsertOnLogin(
      accountId,
      identity.email,
      identity.name ?? null,
      now,
    );
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
    if (flow.appHost !== null) {
      // App flows always carry their app and `meta` (the login route sends them back otherwise).
      if (!entry || flow.meta === null) throw new LoginError(400, 'The sign-in link is not valid.');
      return handOff(request, reply, {
        entry,
        host: flow.appHost,
        redirectUrl: flow.redirectUrl,
        meta: flow.meta,
        session,
      });
    }
    // A team-domain login: the module that asked for it (org-session.ts loginUrl) decides.
    await record(request, {
      action: 'login',
      allowed: true,
      userEmail: identity.email,
      userId: user.id,
      appUid: entry?.app.id ?? null,
      appType: entry?.app.type ?? null,
      connection: identity.idp.type,
      idpId: identity.idp.id,
    });
    return redirect(reply, new URL(flow.redirectUrl, team.origin).href);
  }

  async function recordFailure(
    request: FastifyRequest,
    flow: LoginFlow | null,
    idp: IdentityProvider | null,
    email: string | null,
  ) {
    const entry = flow?.appId ? gateway.snapshot.current().appsById.get(flow.appId) : undefined;
    await record(request, {
      action: 'login',
      allowed: false,
      userEmail: email,
      userId: null,
      appUid: entry?.app.id ?? null,
      appDomain: flow?.appHost ?? null,
      appType: entry?.app.type ?? null,
      connection: idp?.type ?? null,
      idpId: idp?.id ?? null,
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

    /** A new login attempt in this browser: the picker, or straight to the only IdP. */
    async function startFlow(
      request: FastifyRequest,
      reply: FastifyReply,
      target: { entry: AppEntry | null; host: string | null; redirectUrl: string; meta: string | null },
    ) {
      const idps = await idpsFor(target.entry);
      if (idps.length === 0) throw new LoginError(400, 'No sign-in method is configured.');
      const browser = flowCookieSecret(request) ?? randomBytes(32).toString('base64url');
      const token = randomBytes(32).toString('base64url');
      await state.createFlow({
        token,
        browser,
        appId: target.entry?.app.id ?? null,
        appHost: target.host,
        redirectUrl: target.redirectUrl,
        meta: target.meta,
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
        target.entry?.app.config.auto_redirect_to_identity ||
        gateway.snapshot.current().account.autoRedirectToIdentity;
      if (autoRedirect && idps.length === 1) {
        const flow = (await state.findFlow(token, browser, new Date()))!;
        return startIdp(reply, token, flow, browser, idps[0]!, target.entry);
      }
      return send(reply, pickerPage(branding(), targetName(target.entry), token, idps, formTargets(idps)));
    }

    app.get<{ Params: { host: string }; Querystring: Record<string, string | undefined> }>(
      '/cdn-cgi/access/login/:host',
      async (request, reply) => {
        const { entry, host } = resolveApp(request.query.kid, request.params.host);
        const redirectUrl = safeRedirectPath(request.query.redirect_url);
        const meta = request.query.meta && META.test(request.query.meta) ? request.query.meta : null;
        // No `meta`: this login was not begun by the app host (a bookmark, a hand-made link), so
        // the hand-off could not be bound to the browser. The app host sets its CF_AppSession
        // cookie and comes back here with `meta` (src/proxy/proxy.ts, the redirect to login).
        if (!meta) return redirect(reply, `${team.protocol}//${host}${redirectUrl}`);
        const session = await currentSession(request);
        const revokedAt = entry.app.tokensRevokedAt;
        // With a live organisation session the app token is minted silently, after the
        // policies are evaluated again (spec §2.3, §4.1 step 7) — unless revoke_tokens on this
        // app came after the session began.
        if (session && !(revokedAt && session.createdAt <= revokedAt)) {
          await state.touchSession(session.id, new Date());
          return handOff(request, reply, { entry, host, redirectUrl, meta, session });
        }
        return startFlow(request, reply, { entry, host, redirectUrl, meta });
      },
    );

    // The team domain's own login (src/login/org-session.ts `loginUrl`): it ends on a path of
    // the team domain, never anywhere else.
    app.get<{ Querystring: Record<string, string | undefined> }>(
      '/cdn-cgi/access/login',
      async (request, reply) => {
        const returnTo = request.query[TEAM_RETURN_PARAM];
        if (returnTo === undefined || !isSafePath(returnTo))
          throw new LoginError(400, 'The sign-in link is not valid.');
        const session = await currentSession(request);
        if (session) {
          await state.touchSession(session.id, new Date());
          return redirect(reply, new URL(returnTo, team.origin).href);
        }
        return startFlow(request, reply, { entry: null, host: null, redirectUrl: returnTo, meta: null });
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
      const entry = flowApp(flow);
      const idp = (await idpsFor(entry)).find((candidate) => candidate.id === body.idp);
      if (!idp) throw new LoginError(400, 'That sign-in method is not available for this application.');
      return startIdp(reply, body.flow!, flow, browser, idp, entry);
    });

    app.post<{ Body: Record<string, string | undefined> }>('/cdn-cgi/access/otp', async (request, reply) => {
      const body = request.body ?? {};
      const { flow, browser } = await loadFlow(request, body.flow);
      const entry = flowApp(flow);
      const idp = (await idpsFor(entry)).find((candidate) => candidate.id === flow.idpId);
      if (idp?.type !== 'onetimepin') throw new LoginError(400, 'Choose a sign-in method first.');
      const email = (body.email ?? '').trim().toLowerCase();
      if (!isEmail(email))
        return send(
          reply,
          emailPage(branding(), targetName(entry), body.flow!, 'Enter a valid email address.'),
        );
      const now = new Date();
      const counts = await state.pinRequestsSince(
        email,
        clientIp(request),
        new Date(now.getTime() - PIN_RATE_WINDOW_MS),
      );
      if (counts.email >= MAX_PINS_PER_EMAIL || counts.ip >= MAX_PINS_PER_IP) {
        throw new LoginError(429, 'Too many codes were requested. Wait a few minutes and try again.');
      }
      // For an app, a PIN goes only to an address its policies would let in; the page says the
      // same either way, and mail is sent in the background so timing does not tell either. A
      // team-domain login has no policy of its own: whoever asked for it checks the identity.
      const identity: LoginIdentity = { email, idp: { id: idp.id, type: idp.type } };
      const allowed = entry
        ? entry.compiled !== null &&
          (await decide(entry.compiled, { ...requestFacts(request, now.getTime()), identity })).decision !==
            'deny'
        : true;
      const pin = generatePin();
      await state.setPin(flow.id, email, allowed ? pinHash(browser, flow.id, pin) : null, now);
      if (allowed) {
        mailer
          .send(email, pin, branding().organisation)
          .catch((error: unknown) => logger.error({ err: error }, 'could not send the one-time PIN email'));
      }
      return send(reply, pinPage(branding(), targetName(entry), body.flow!, email, continueOrigin(flow)));
    });

    app.post<{ Body: Record<string, string | undefined> }>(
      '/cdn-cgi/access/otp/verify',
      async (request, reply) => {
        const body = request.body ?? {};
        const { flow, browser } = await loadFlow(request, body.flow);
        const entry = flowApp(flow);
        const idp = (await idpsFor(entry)).find((candidate) => candidate.id === flow.idpId);
        if (idp?.type !== 'onetimepin' || !flow.pinEmail || !flow.pinSentAt) {
          throw new LoginError(400, 'Request a code first.');
        }
        const again = (message: string) =>
          send(
            reply,
            pinPage(branding(), targetName(entry), body.flow!, flow.pinEmail!, continueOrigin(flow), message),
          );
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
        const entry = flowApp(flow);
        const idp = (await idpsFor(entry)).find((candidate) => candidate.id === flow.idpId);
        if (!idp || idp.type === 'onetimepin')
          throw new LoginError(400, 'This sign-in attempt is not waiting for an identity provider.');
        // Consumed before the code is redeemed: a replayed callback finds no flow.
        if (!(await state.consumeFlow(flow.id, new Date())))
          throw new LoginError(400, 'This sign-in attempt was already used.');
        let identity: LoginIdentity;
        try {
          const url = new URL(request.url, settings.teamDomain);
          identity = await upstreamFor(idp, github, limits).complete(
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
      return reply.send(
        identityDocument(session, accountId, clientIp(request), requestCountry(request) ?? UNKNOWN_COUNTRY),
      );
    });

    app.get('/cdn-cgi/access/logout', async (request, reply) => {
      const session = await currentSession(request);
      if (session) {
        const at = new Date().toISOString();
        // Every session and token of the user, in every app, ends now (spec §4.6): the session
        // rows, and the user's revocation instant that the proxy's snapshot follows (decision 3).
        await gateway.store.write(async (tx, changed) => {
          await gateway.repos.users.revoke(tx, session.userId, at);
          await endUserSessions(tx, accountId, session.userId, at);
          changed({ table: 'users', accountId, id: session.userId });
        });
        await record(request, {
          action: 'logout',
          allowed: true,
          userEmail: session.identity.email,
          userId: session.userId,
          connection: session.identity.idp.type,
          idpId: session.identity.idp.id,
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

/**
 * Cloudflare's get-identity document (spec §4.6) for an organisation session; `country` is the
 * requesting client's, from the configured country source (src/geo/country.ts), or `XX`.
 */
export function identityDocument(session: LoginSession, accountId: string, ip: string, country: string) {
  const { identity } = session;
  return {
    email: identity.email,
    ...(identity.name !== undefined && { name: identity.name }),
    idp: { id: identity.idp.id, type: identity.idp.type },
    geo: { country },
    user_uuid: session.userId,
    account_id: accountId,
    iat: Math.floor(Date.parse(session.createdAt) / 1000),
    ip,
    identity_nonce: session.identityNonce,
    ...FIXED_IDENTITY_FIELDS,
    device_id: '',
    devicePosture: {},
    device_sessions: {},
    ...(identity.amr && { amr: identity.amr }),
    ...(identity.oidcClaims && { oidc_fields: identity.oidcClaims }),
    ...(identity.github && { github: identity.github }),
    version: 1,
  };
}
