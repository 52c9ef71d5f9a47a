// One-time PIN login end to end on the wire: real SMTP, real store, the management API creating
// the app and the IdP; then the attacks on it, each refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyJwt } from '../../src/keys/jwt.ts';
import { Browser } from '../support/browser.ts';
import { databaseKinds } from '../support/databases.ts';
import {
  accessLog,
  appSession,
  createPinIdp,
  createSelfHostedApp,
  formField,
  idpChoices,
  type LoginHarness,
  startLoginHarness,
  verifyHandOff,
} from './support.ts';

let h: LoginHarness;
let aud: string;
let otherAud: string;
let pinIdp: string;
let host: string;

describe.each(databaseKinds)('%s', (kind) => {
  beforeAll(async () => {
    h = await startLoginHarness({ server: { kind } });
    host = `wiki.localhost:${h.port}`;
    pinIdp = await createPinIdp(h);
    aud = (await createSelfHostedApp(h, 'wiki.localhost', { name: 'Wiki' })).aud;
    otherAud = (await createSelfHostedApp(h, 'admin.localhost', { name: 'Admin' })).aud;
    await h.gateway.gateway.snapshot.refresh();
  });
  afterAll(() => h.close());

  /** The login URL the app host's redirect makes for `browser` (with its CF_AppSession `meta`). */
  const loginUrl = (browser: Browser, redirect = '/docs', appHost = host, kid = aud) =>
    `${h.url}/cdn-cgi/access/login/${appHost}?kid=${kid}&redirect_url=${encodeURIComponent(redirect)}&meta=${appSession(browser, appHost)}`;

  /** Runs the PIN flow up to the PIN page; returns the browser, the flow token and the PIN. */
  async function requestPin(email: string, redirect = '/docs') {
    const browser = new Browser(h.port);
    const picker = await browser.request(loginUrl(browser, redirect));
    expect(picker.status).toBe(200);
    expect(idpChoices(picker.text)).toContain(pinIdp);
    const flow = formField(picker.text, 'flow');
    const emailForm = await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } });
    expect(emailForm.status).toBe(200);
    const pin = h.mailbox.nextPin(email);
    const pinForm = await browser.request(`${h.url}/cdn-cgi/access/otp`, { form: { flow, email } });
    expect(pinForm.status).toBe(200);
    return { browser, flow, pin, pinForm };
  }

  describe('one-time PIN login', () => {
    it('mails a PIN, logs in, hands an app token to the app host, re-mints silently, logs out', async () => {
      const { browser, flow, pin } = await requestPin('Alice@Example.com');
      const done = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
        form: { flow, pin: await pin },
      });
      expect(done.status).toBe(302);
      const handOff = new URL(done.location!);
      expect(handOff.origin).toBe(`http://${host}`);
      expect(handOff.pathname).toBe('/cdn-cgi/access/authorized');
      expect(handOff.searchParams.get('redirect_url')).toBe('/docs');
      const { payload, protectedHeader } = await verifyHandOff(h, handOff, aud);
      expect(protectedHeader).toMatchObject({ alg: 'RS256', typ: 'JWT' });
      expect(payload).toMatchObject({ type: 'app', aud: [aud], email: 'alice@example.com', country: 'XX' });
      expect(payload.identity_nonce).toMatch(/^[0-9a-f]{32}$/);
      expect(payload.exp! - payload.iat!).toBe(86_400);

      const identity = await browser.request(`${h.url}/cdn-cgi/access/get-identity`);
      expect(identity.status).toBe(200);
      const body = JSON.parse(identity.text);
      expect(body).toMatchObject({
        email: 'alice@example.com',
        user_uuid: payload.sub,
        idp: { id: pinIdp, type: 'onetimepin' },
        // No country source is configured: Cloudflare's "unknown".
        geo: { country: 'XX' },
      });

      // A second app: the organisation session mints its token without another login.
      const silent = await browser.request(loginUrl(browser, '/', `admin.localhost:${h.port}`, otherAud));
      expect(silent.status).toBe(302);
      const second = new URL(silent.location!);
      expect(second.host).toBe(`admin.localhost:${h.port}`);
      const again = await verifyHandOff(h, second, otherAud);
      expect(again.payload.sub).toBe(payload.sub);

      const log = await accessLog(h, 'alice@example.com');
      expect(log.filter((row) => row.allowed === 1 && row.action === 'login')).toHaveLength(2);
      expect(log[0]).toMatchObject({
        connection: 'onetimepin',
        app_uid: expect.any(String),
        ip_address: '127.0.0.1',
      });

      const logout = await browser.request(`${h.url}/cdn-cgi/access/logout`);
      expect(logout.status).toBe(200);
      expect(browser.jar.get(new URL(h.url).host)?.has('CF_Authorization')).toBe(false);
      const user = await h.gateway.gateway.store.db
        .selectFrom('users')
        .selectAll()
        .where('id', '=', payload.sub!)
        .executeTakeFirstOrThrow();
      expect(user.revoked_at).not.toBeNull();
      expect(user.last_successful_login).not.toBeNull();
      // Back to the login page after logout.
      expect((await browser.request(loginUrl(browser))).status).toBe(200);
    });

    it('keeps the same uid for the same email on the next login', async () => {
      const first = await requestPin('bob@example.com');
      const a = await first.browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
        form: { flow: first.flow, pin: await first.pin },
      });
      const second = await requestPin('BOB@example.com');
      const b = await second.browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
        form: { flow: second.flow, pin: await second.pin },
      });
      const sub = async (location: string) => (await verifyHandOff(h, location)).payload.sub;
      expect(await sub(a.location!)).toBe(await sub(b.location!));
    });

    it('answers the same for an address that may not sign in, and mails nothing', async () => {
      const before = h.mailbox.sent.length;
      const allowed = await requestPin('carol@example.com');
      await allowed.pin;
      const browser = new Browser(h.port);
      const picker = await browser.request(loginUrl(browser));
      const flow = formField(picker.text, 'flow');
      await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } });
      const page = await browser.request(`${h.url}/cdn-cgi/access/otp`, {
        form: { flow, email: 'mallory@evil.test' },
      });
      expect(page.status).toBe(allowed.pinForm.status);
      const strip = (html: string, email: string) =>
        html.replaceAll(email, 'E').replace(/name="flow" value="[^"]*"/, '');
      expect(strip(page.text, 'mallory@evil.test')).toBe(strip(allowed.pinForm.text, 'carol@example.com'));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(h.mailbox.sent.slice(before).map((mail) => mail.to)).toEqual(['carol@example.com']);
    });
  });

  describe('attacks on the PIN login', () => {
    it('refuses a PIN used twice', async () => {
      const { browser, flow, pin } = await requestPin('dave@example.com');
      const code = await pin;
      expect(
        (await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, { form: { flow, pin: code } })).status,
      ).toBe(302);
      const replay = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
        form: { flow, pin: code },
      });
      expect(replay.status).toBe(400);
      expect(replay.location).toBeNull();
    });

    it('locks the PIN after 5 wrong tries, even for the right one after', async () => {
      const { browser, flow, pin } = await requestPin('erin@example.com');
      const code = await pin;
      const wrong = code === '000000' ? '111111' : '000000';
      for (let i = 0; i < 4; i++) {
        expect(
          (await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, { form: { flow, pin: wrong } }))
            .status,
        ).toBe(400);
      }
      expect(
        (await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, { form: { flow, pin: wrong } })).status,
      ).toBe(401);
      const late = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, { form: { flow, pin: code } });
      expect(late.status).toBe(401);
      expect(late.location).toBeNull();
      const failed = (await accessLog(h, 'erin@example.com')).filter((row) => row.allowed === 0);
      expect(failed.length).toBe(6);
    });

    it('refuses the PIN form from another browser (CSRF: no CF_Session, or someone else’s)', async () => {
      const { flow, pin } = await requestPin('frank@example.com');
      const code = await pin;
      const attacker = new Browser(h.port);
      expect(
        (await attacker.request(`${h.url}/cdn-cgi/access/otp/verify`, { form: { flow, pin: code } })).status,
      ).toBe(400);
      await attacker.request(loginUrl(attacker));
      expect(
        (await attacker.request(`${h.url}/cdn-cgi/access/otp/verify`, { form: { flow, pin: code } })).status,
      ).toBe(400);
    });

    it('rate-limits PIN requests per email', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const browser = new Browser(h.port);
        const picker = await browser.request(loginUrl(browser));
        const flow = formField(picker.text, 'flow');
        await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } });
        statuses.push(
          (await browser.request(`${h.url}/cdn-cgi/access/otp`, { form: { flow, email: 'flood@evil.test' } }))
            .status,
        );
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    });

    it.each([
      ['https://evil.example/x'],
      ['//evil.example/x'],
      ['/\\evil.example/x'],
      ['\\\\evil.example'],
      ['HtTpS://evil.example'],
      ['%2F%2Fevil.example'],
      ['/%0d%0aSet-Cookie:%20x=y'],
      ['javascript:alert(1)'],
      ['/\t/evil.example'],
    ])('never leaves the app host through redirect_url %s', async (redirect) => {
      const email = `grace.${encodeURIComponent(redirect).replace(/[^a-z0-9]/gi, '')}@example.com`;
      const { browser, flow, pin } = await requestPin(email, redirect);
      const done = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
        form: { flow, pin: await pin },
      });
      const handOff = new URL(done.location!);
      expect(handOff.host).toBe(host);
      const path = handOff.searchParams.get('redirect_url')!;
      expect(new URL(path, `http://${host}`).host).toBe(host);
      expect(path.startsWith('/') && !path.startsWith('//') && !path.includes('\\')).toBe(true);
    });

    it.each([
      ['evil.example'],
      ['wiki.localhost.evil.example'],
      ['evil.example@wiki.localhost'],
      ['wiki.localhost:1'],
      ['WIKI.localhost%2F@evil.example'],
      ['admin.localhost'],
    ])('refuses a login for app host %s that is not the kid app’s own', async (appHost) => {
      const browser = new Browser(h.port);
      const page = await browser.request(
        `${h.url}/cdn-cgi/access/login/${appHost}?kid=${aud}&redirect_url=/`,
      );
      expect(page.status).toBe(400);
      expect(page.location).toBeNull();
    });

    it('refuses an IdP the app does not allow', async () => {
      const otherIdp = await h.api('POST', '/identity_providers', {
        name: 'Corp',
        type: 'oidc',
        config: {
          client_id: 'x',
          client_secret: 'y',
          auth_url: 'https://idp.example/auth',
          token_url: 'https://idp.example/token',
          certs_url: 'https://idp.example/jwks',
        },
      });
      expect(otherIdp.status).toBe(201);
      const app = await h.api('POST', '/apps', {
        type: 'self_hosted',
        name: 'Ops',
        domain: 'ops.localhost',
        allowed_idps: [otherIdp.body.result.id],
        policies: [{ name: 'all', decision: 'allow', include: [{ everyone: {} }] }],
      });
      await h.gateway.gateway.snapshot.refresh();
      const browser = new Browser(h.port);
      const picker = await browser.request(
        loginUrl(browser, '/', `ops.localhost:${h.port}`, app.body.result.aud),
      );
      expect(idpChoices(picker.text)).toEqual([otherIdp.body.result.id]);
      const flow = formField(picker.text, 'flow');
      const refused = await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } });
      expect(refused.status).toBe(400);
    });

    it('starts a new session after login whatever cookies the browser arrived with (fixation)', async () => {
      const browser = new Browser(h.port);
      const teamHost = new URL(h.url).host;
      browser.jar.set(teamHost, new Map([['CF_Authorization', 'attacker-chosen']]));
      const picker = await browser.request(loginUrl(browser));
      const flow = formField(picker.text, 'flow');
      await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } });
      const pin = h.mailbox.nextPin('heidi@example.com');
      await browser.request(`${h.url}/cdn-cgi/access/otp`, { form: { flow, email: 'heidi@example.com' } });
      await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, { form: { flow, pin: await pin } });
      const org = browser.jar.get(teamHost)!.get('CF_Authorization')!;
      expect(org).not.toBe('attacker-chosen');
      const { payload } = await verifyJwt(h.gateway.gateway.keys, org, { issuer: h.url });
      expect(payload.type).toBe('org');
      // The flow secret is gone: it cannot be reused for another login.
      expect(browser.jar.get(teamHost)!.has('CF_Session')).toBe(false);
    });

    it('sets every cookie HttpOnly with SameSite and a Path', async () => {
      const { browser, flow, pin } = await requestPin('ivan@example.com');
      await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, { form: { flow, pin: await pin } });
      await browser.request(`${h.url}/cdn-cgi/access/logout`);
      expect(browser.setCookies.length).toBeGreaterThanOrEqual(4);
      for (const line of browser.setCookies) {
        expect(line).toMatch(/; HttpOnly/);
        expect(line).toMatch(/; SameSite=(Lax|None|Strict)/);
        expect(line).toMatch(/; Path=\//);
      }
    });

    it('serves pages with a strict Content-Security-Policy, lang and labels', async () => {
      const { pinForm } = await requestPin('judy@example.com');
      const browser = new Browser(h.port);
      const picker = await browser.request(loginUrl(browser));
      const csp = picker.headers.get('content-security-policy')!;
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).toMatch(/form-action 'self'/);
      expect(csp).toMatch(/style-src 'sha256-/);
      expect(picker.text).toContain('<html lang="en">');
      expect(pinForm.text).toContain('<label for="pin">');
      expect(picker.text).not.toMatch(/<script|https?:\/\/(?!127)/);
    });
  });
});
