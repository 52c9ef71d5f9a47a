// The login step of an authorization request (`<issuer>/interaction/<uid>`): the team domain's
// organisation session is reused, or the user is sent to log in and comes back here; then the
// SaaS app's own policies decide. A user they do not allow gets `access_denied` at the client's
// redirect URI (RFC 6749 §4.1.2.1); a user allowed gets a grant for the requested scopes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CountrySource } from '../geo/country.ts';
import type { OrgSessions } from '../login/org-session.ts';
import type { IdentityDecider } from '../policy-external/identity-decision.ts';
import { certificateFacts } from '../tls/client-certificate.ts';
import type { OidcStorage } from './adapter.ts';
import { missingRequiredClaim } from './claims.ts';
import { errorHtml, INTERACTION_PATH, type Provider } from './engine.ts';
import { allowedNow, rememberLogin, type SaasEntry } from './saas.ts';

export interface InteractionDeps {
  orgSessions: OrgSessions;
  /** The client's country for `geo` rules (src/geo/country.ts); null when no source is configured. */
  country: CountrySource | null;
  /** Identity-time decisions, external evaluation included (src/policy-external/identity-decision.ts). */
  decide: IdentityDecider;
  storage: OidcStorage;
  /** How long the login's identity is kept for refreshes and userinfo (the refresh lifetime). */
  rememberSeconds: number;
}

export async function handleInteraction(
  provider: Provider,
  entry: SaasEntry,
  uid: string,
  req: IncomingMessage,
  res: ServerResponse,
  deps: InteractionDeps,
): Promise<void> {
  let details: Awaited<ReturnType<Provider['interactionDetails']>>;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    return page(res, 400, 'invalid_request', 'This sign-in request has expired or was not started here.');
  }
  // The interaction cookie names the interaction; a URL naming another one is not followed.
  if (details.uid !== uid) return page(res, 400, 'invalid_request', 'This sign-in request does not match.');

  const session = await deps.orgSessions.current(req.headers);
  if (!session) {
    const back = `${new URL(provider.issuer).pathname}${INTERACTION_PATH}${uid}`;
    res.writeHead(302, { location: deps.orgSessions.loginUrl(back), 'cache-control': 'no-store' });
    res.end();
    return;
  }

  const { app } = entry;
  const email = session.identity.email;
  const allowedIdps = app.config.allowed_idps;
  const idpAllowed = allowedIdps.length === 0 || allowedIdps.includes(session.identity.idp.id);
  // The browser's address now: the policies' IP rules are checked as at any Access login, and
  // the same address is used when they are evaluated again on refresh.
  const ip = req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? null;
  const country = ip === null ? undefined : deps.country?.(ip, req.headers);
  const login = {
    identity: session.identity,
    ip,
    ...certificateFacts(req.socket, Date.now()),
    ...(country !== undefined && { country }),
  };
  if (!idpAllowed || !(await allowedNow(entry, session.userId, email, login, deps.decide))) {
    await provider.interactionFinished(
      req,
      res,
      {
        error: 'access_denied',
        error_description: 'the application’s Access policies do not allow this user',
      },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  const missing = missingRequiredClaim(app.config.saas_app, session.identity);
  if (missing) {
    return page(
      res,
      403,
      'access_denied',
      `Your identity provider did not supply the required claim "${missing}".`,
    );
  }

  await rememberLogin(deps.storage, app.id, session.userId, login, deps.rememberSeconds);
  // Always a new grant for the user signed in now: a grant remembered by oidc-provider's
  // session may belong to whoever used this browser before.
  const grant = new provider.Grant({ accountId: session.userId, clientId: app.clientId });
  const scope = details.params.scope ?? '';
  grant.addOIDCScope(scope);
  grant.addResourceScope(details.params.resource ?? provider.issuer, scope);
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: session.userId, remember: false }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

function page(res: ServerResponse, status: number, error: string, description: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
  });
  res.end(errorHtml(error, description));
}
