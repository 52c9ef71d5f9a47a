// The hand-off of the app token to `<app host>/cdn-cgi/access/authorized` (spec §4.1 step 6),
// through the real proxy: bound to the browser that began the login by its CF_AppSession cookie
// (src/keys/app-session.ts). Each attack on it is refused.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser } from '../support/browser.ts';
import { databaseKinds } from '../support/databases.ts';
import { freePort } from '../support/ports.ts';
import {
  createPinIdp,
  createSelfHostedApp,
  formField,
  type LoginHarness,
  routeHost,
  startLoginHarness,
} from './support.ts';

let h: LoginHarness;
let pinIdp: string;
let host: string;
let origin: http.Server;

describe.each(databaseKinds)('%s', (kind) => {
  beforeAll(async () => {
    origin = http.createServer((_req, res) => res.end('origin'));
    const originPort = await freePort();
    await new Promise<void>((resolve) => origin.listen(originPort, '127.0.0.1', resolve));
    h = await startLoginHarness({ server: { kind } });
    host = `wiki.localhost:${h.port}`;
    pinIdp = await createPinIdp(h);
    await createSelfHostedApp(h, 'wiki.localhost', { name: 'Wiki' });
    await routeHost(h, 'wiki.localhost', `http://127.0.0.1:${originPort}`);
  });
  afterAll(async () => {
    await h.close();
    await new Promise((resolve) => origin.close(resolve));
  });

  /** From the app host to a hand-off URL, as a browser goes; returns the browser and that URL. */
  async function loginFromApp(email: string, browser = new Browser(h.port)) {
    const start = await browser.request(`http://${host}/docs?q=1`);
    expect(start.status).toBe(302);
    const appSession = start.headers.getSetCookie().find((line) => line.startsWith('CF_AppSession='));
    expect(appSession).toMatch(
      /^CF_AppSession=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=86400; HttpOnly; SameSite=Lax$/,
    );
    const login = new URL(start.location!);
    expect(login.origin).toBe(h.url);
    expect(login.searchParams.get('meta')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // The secret itself never leaves the app host's cookie.
    expect(start.location).not.toContain(appSession!.split(';')[0]!.split('=')[1]);
    const picker = await browser.request(login.href);
    const flow = formField(picker.text, 'flow');
    await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } });
    const pin = h.mailbox.nextPin(email);
    await browser.request(`${h.url}/cdn-cgi/access/otp`, { form: { flow, email } });
    const done = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
      form: { flow, pin: await pin },
    });
    expect(done.status).toBe(302);
    const handOff = new URL(done.location!);
    expect(handOff.host).toBe(host);
    expect(handOff.searchParams.get('app_session')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    return { browser, handOff };
  }

  const hasAppCookie = (browser: Browser) => browser.jar.get(host)?.has('CF_Authorization') ?? false;

  describe('the authorized hand-off', () => {
    it('sets the app cookie for the browser that began the login, and it reaches the page', async () => {
      const { browser, handOff } = await loginFromApp('alice@example.com');
      const done = await browser.request(handOff.href);
      expect(done.status).toBe(302);
      expect(done.location).toBe('/docs?q=1');
      expect(hasAppCookie(browser)).toBe(true);
    });

    it('refuses the hand-off in another browser, with or without a CF_AppSession of its own', async () => {
      const { handOff } = await loginFromApp('bob@example.com');
      const stranger = new Browser(h.port);
      expect((await stranger.request(handOff.href)).status).toBe(403);
      expect(hasAppCookie(stranger)).toBe(false);
      // The attacker's own CF_AppSession, from a login it began on the same app.
      expect((await stranger.request(`http://${host}/docs`)).status).toBe(302);
      expect(stranger.jar.get(host)?.has('CF_AppSession')).toBe(true);
      expect((await stranger.request(handOff.href)).status).toBe(403);
      expect(hasAppCookie(stranger)).toBe(false);
    });

    it('refuses a hand-off planted in the victim’s browser (login CSRF)', async () => {
      // The attacker logs in as itself and sends its hand-off URL to a victim who has visited the app.
      const { handOff } = await loginFromApp('mallory@example.com');
      const victim = new Browser(h.port);
      await victim.request(`http://${host}/`);
      expect((await victim.request(handOff.href)).status).toBe(403);
      expect(hasAppCookie(victim)).toBe(false);
    });

    it('refuses a missing, altered or borrowed app_session', async () => {
      const first = await loginFromApp('carol@example.com');
      // A second hand-off to the same browser: the organisation session mints it silently. App
      // tokens carry whole seconds, so the next second gives a different token.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const back = await first.browser.request(`http://${host}/second`);
      const silent = await first.browser.request(back.location!);
      const second = { browser: first.browser, handOff: new URL(silent.location!) };
      expect(second.handOff.pathname).toBe('/cdn-cgi/access/authorized');
      expect(second.handOff.searchParams.get('token')).not.toBe(first.handOff.searchParams.get('token'));
      const variants: [string, (url: URL) => void][] = [
        ['missing', (url) => url.searchParams.delete('app_session')],
        ['altered', (url) => url.searchParams.set('app_session', 'A'.repeat(43))],
        // A MAC made for another token of the same browser does not fit this token.
        [
          'borrowed',
          (url) => url.searchParams.set('app_session', first.handOff.searchParams.get('app_session')!),
        ],
      ];
      for (const [name, change] of variants) {
        const url = new URL(second.handOff.href);
        change(url);
        expect((await second.browser.request(url.href)).status, name).toBe(403);
      }
      expect(hasAppCookie(second.browser)).toBe(false);
    });

    it('sends a login link without meta back to the app host, which binds it first', async () => {
      const browser = new Browser(h.port);
      const aud = h.gateway.gateway.snapshot.current().apps.find((entry) => entry.app.name === 'Wiki')!
        .app.aud;
      const bare = await browser.request(
        `${h.url}/cdn-cgi/access/login/${host}?kid=${aud}&redirect_url=%2Fdocs`,
      );
      expect(bare.status).toBe(302);
      expect(bare.location).toBe(`http://${host}/docs`);
      const hostile = await browser.request(
        `${h.url}/cdn-cgi/access/login/${host}?kid=${aud}&redirect_url=${encodeURIComponent('//evil.example')}`,
      );
      expect(hostile.location).toBe(`http://${host}/`);
    });

    it('mints silently with a live organisation session, still bound to the browser', async () => {
      const { browser, handOff } = await loginFromApp('erin@example.com');
      expect((await browser.request(handOff.href)).status).toBe(302);
      browser.jar.get(host)!.delete('CF_Authorization');
      const start = await browser.request(`http://${host}/other`);
      const silent = await browser.request(start.location!);
      expect(silent.status).toBe(302);
      const again = new URL(silent.location!);
      expect(again.pathname).toBe('/cdn-cgi/access/authorized');
      expect((await new Browser(h.port).request(again.href)).status).toBe(403);
      expect((await browser.request(again.href)).status).toBe(302);
      expect(hasAppCookie(browser)).toBe(true);
    });
  });
});
