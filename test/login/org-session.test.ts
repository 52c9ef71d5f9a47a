// The organisation session as other team-domain modules use it (src/login/org-session.ts): a
// login made for the team domain itself that returns to a team-domain path, `current()` behind
// the CF_Authorization cookie, and the return path that never leaves the team domain.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintJwt } from '../../src/keys/jwt.ts';
import { type OrgSessions, orgSessions } from '../../src/login/org-session.ts';
import { Browser } from '../support/browser.ts';
import { databaseKinds } from '../support/databases.ts';
import { accessLog, createPinIdp, formField, type LoginHarness, startLoginHarness } from './support.ts';

let h: LoginHarness;
let sessions: OrgSessions;
let pinIdp: string;
let teamHost: string;

describe.each(databaseKinds)('%s', (kind) => {
  beforeAll(async () => {
    h = await startLoginHarness({ server: { kind } });
    teamHost = new URL(h.url).host;
    sessions = orgSessions(h.gateway.gateway);
    pinIdp = await createPinIdp(h);
  });
  afterAll(() => h.close());

  const RETURN = '/cdn-cgi/access/sso/oidc/client-1/authorization?client_id=client-1&state=xyz';

  /** Logs `email` in through the team-domain login; returns the browser and the final response. */
  async function teamLogin(email: string, returnTo = RETURN) {
    const browser = new Browser(h.port);
    const picker = await browser.request(sessions.loginUrl(returnTo));
    expect(picker.status).toBe(200);
    const flow = formField(picker.text, 'flow');
    expect(
      (await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } })).status,
    ).toBe(200);
    const pin = h.mailbox.nextPin(email);
    expect((await browser.request(`${h.url}/cdn-cgi/access/otp`, { form: { flow, email } })).status).toBe(
      200,
    );
    const done = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
      form: { flow, pin: await pin },
    });
    return { browser, done };
  }

  const cookieOf = (browser: Browser) => ({
    cookie: [...(browser.jar.get(teamHost) ?? new Map())]
      .map(([name, value]) => `${name}=${value}`)
      .join('; '),
  });

  describe('OrgSessions', () => {
    it('builds a team-domain login URL and refuses any return that is not a team-domain path', () => {
      const url = new URL(sessions.loginUrl(RETURN));
      expect(url.origin).toBe(h.url);
      expect(url.pathname).toBe('/cdn-cgi/access/login');
      expect(url.searchParams.get('redirect_url')).toBe(RETURN);
      for (const bad of [
        'https://evil.example/x',
        '//evil.example/x',
        '/\\evil.example',
        'javascript:alert(1)',
        'HtTpS://evil.example',
        '/\t/evil.example',
        '',
        'relative/path',
      ]) {
        expect(() => sessions.loginUrl(bad), bad).toThrow(TypeError);
      }
    });

    it('logs in for the team domain, returns to the path, and current() names the session', async () => {
      expect(await sessions.current({})).toBeNull();
      const { browser, done } = await teamLogin('Tess@Example.com');
      expect(done.status).toBe(302);
      expect(done.location).toBe(`${h.url}${RETURN}`);
      const session = await sessions.current(cookieOf(browser));
      expect(session).toMatchObject({
        email: 'tess@example.com',
        identity: { email: 'tess@example.com', idp: { id: pinIdp, type: 'onetimepin' } },
      });
      expect(session!.identityNonce).toMatch(/^[0-9a-f]{32}$/);
      expect(session!.expiresAt.getTime()).toBeGreaterThan(Date.now() + 23 * 3600_000);
      const user = await h.gateway.gateway.repos.users.findByEmail(
        h.gateway.gateway.account.accountId,
        'tess@example.com',
      );
      expect(session!.userId).toBe(user!.id);

      // With the session live, the login sends the browser straight back.
      const again = await browser.request(sessions.loginUrl('/elsewhere?x=1'));
      expect(again.status).toBe(302);
      expect(again.location).toBe(`${h.url}/elsewhere?x=1`);

      const log = await accessLog(h, 'tess@example.com');
      expect(log).toMatchObject([{ action: 'login', allowed: 1, connection: 'onetimepin', app_uid: null }]);

      await browser.request(`${h.url}/cdn-cgi/access/logout`);
      expect(await sessions.current(cookieOf(browser))).toBeNull();
    });

    it('refuses a hand-made team login that would leave the team domain', async () => {
      for (const bad of [
        'https://evil.example/',
        '//evil.example',
        '/\\evil.example',
        '%2F%2Fevil.example',
      ]) {
        const browser = new Browser(h.port);
        const page = await browser.request(
          `${h.url}/cdn-cgi/access/login?redirect_url=${encodeURIComponent(bad)}`,
        );
        expect(page.status, bad).toBe(400);
        expect(page.location).toBeNull();
      }
    });

    it('is null for a forged, foreign or non-org CF_Authorization', async () => {
      const { browser } = await teamLogin('uma@example.com');
      const real = await sessions.current(cookieOf(browser));
      expect(real).not.toBeNull();
      const keys = h.gateway.gateway.keys;
      const exp = Math.floor(Date.now() / 1000) + 3600;
      const accountId = h.gateway.gateway.account.accountId;
      // An app token (type app) for the same user and session id is not an organisation session.
      const appToken = await mintJwt(
        keys,
        { type: 'app', aud: [accountId], sub: real!.userId, jti: real!.sessionId },
        { issuer: h.url, expiresAt: exp },
      );
      // A well-signed org token naming a session that does not exist.
      const unknown = await mintJwt(
        keys,
        { type: 'org', aud: [accountId], sub: real!.userId, jti: '00000000-0000-4000-8000-000000000000' },
        { issuer: h.url, expiresAt: exp },
      );
      // The right session id under another user's sub.
      const otherSub = await mintJwt(
        keys,
        { type: 'org', aud: [accountId], sub: '00000000-0000-4000-8000-000000000001', jti: real!.sessionId },
        { issuer: h.url, expiresAt: exp },
      );
      const org = browser.jar.get(teamHost)!.get('CF_Authorization')!;
      const [header, payload] = org.split('.');
      for (const token of [appToken, unknown, otherSub, `${header}.${payload}.AAAA`, 'garbage']) {
        expect(await sessions.current({ cookie: `CF_Authorization=${token}` })).toBeNull();
      }
    });

    it('is null once revoke_user has ended the user’s sessions', async () => {
      const { browser } = await teamLogin('victor@example.com');
      expect(await sessions.current(cookieOf(browser))).not.toBeNull();
      const revoked = await h.api('POST', '/organizations/revoke_user', { email: 'victor@example.com' });
      expect(revoked).toMatchObject({ status: 200, body: { result: true } });
      expect(await sessions.current(cookieOf(browser))).toBeNull();
      // The session rows end too (not only the user's revocation instant).
      const user = await h.gateway.gateway.repos.users.findByEmail(
        h.gateway.gateway.account.accountId,
        'victor@example.com',
      );
      const rows = await h.gateway.gateway.store.db
        .withTables<{ login_sessions: { user_id: string; revoked_at: string | null } }>()
        .selectFrom('login_sessions')
        .select('revoked_at')
        .where('user_id', '=', user!.id)
        .execute();
      expect(rows.length).toBe(1);
      expect(rows[0]!.revoked_at).not.toBeNull();
      // And the proxy's snapshot learns it from the change notification, without a manual refresh.
      const deadline = Date.now() + 5_000;
      while (!h.gateway.gateway.snapshot.current().userRevocations.has(user!.id) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(h.gateway.gateway.snapshot.current().userRevocations.get(user!.id)).toBe(user!.revokedAt);
    });
  });
});
