// Headless Chromium (Debian's, driven by playwright-core) through the whole gateway: a protected
// app host, created with its policy and ingress through the management API, sends the browser to
// the team login; the one-time PIN arrives at a real SMTP server; after the login the browser is
// back on the app and the origin sees a Cf-Access-Jwt-Assertion that verifies against the team
// domain's published keys. Then the attack on the hand-off, and logout.
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { type Browser as Chromium, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.ts';
import { type LoginHarness, routeHost, startLoginHarness } from './support.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.resolve('test-artifacts');

let h: LoginHarness;
let chrome: Chromium;
let origin: http.Server;
let appUrl: string;
let aud: string;
/** What the origin saw: the verified assertion's email, per request path. */
const seen: { path: string; email: string | null; error?: string }[] = [];

beforeAll(async () => {
  h = await startLoginHarness();
  const jwks = createRemoteJWKSet(new URL(`${h.url}/cdn-cgi/access/certs`));
  // The origin trusts nothing but the assertion, verified as a real origin would (spec §4.3).
  origin = http.createServer(async (req, res) => {
    const assertion = req.headers['cf-access-jwt-assertion'];
    let email: string | null = null;
    let error: string | undefined;
    try {
      const { payload } = await jwtVerify(String(assertion), jwks, { issuer: h.url, audience: aud });
      email = typeof payload.email === 'string' ? payload.email : null;
    } catch (caught) {
      error = (caught as Error).message;
    }
    seen.push({ path: req.url ?? '', email, ...(error && { error }) });
    res.writeHead(email ? 200 : 401, { 'content-type': 'text/html; charset=utf-8' });
    res.end(
      `<!doctype html><title>Wiki</title><h1 id="who">${email ? `Hello ${email}` : 'no identity'}</h1>`,
    );
  });
  const originPort = await freePort();
  await new Promise<void>((resolve) => origin.listen(originPort, '127.0.0.1', resolve));

  const idp = await h.api('POST', '/identity_providers', { name: 'PIN', type: 'onetimepin', config: {} });
  expect(idp.status).toBe(201);
  const app = await h.api('POST', '/apps', {
    type: 'self_hosted',
    name: 'Company wiki',
    domain: 'wiki.localhost',
    policies: [{ name: 'staff', decision: 'allow', include: [{ email_domain: { domain: 'example.com' } }] }],
  });
  expect(app.status).toBe(201);
  aud = app.body.result.aud;
  await routeHost(h, 'wiki.localhost', `http://127.0.0.1:${originPort}`);
  appUrl = `http://wiki.localhost:${h.port}`;

  chrome = await chromium.launch({
    executablePath: CHROMIUM,
    // *.localhost app hosts reach the one loopback listener whatever the system resolver does.
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--host-resolver-rules=MAP *.localhost 127.0.0.1',
    ],
  });
  mkdirSync(ARTIFACTS, { recursive: true });
});

afterAll(async () => {
  await chrome?.close();
  await new Promise((resolve) => origin?.close(resolve));
  await h?.close();
});

describe('browser login with a one-time PIN', () => {
  it('signs in, reaches the app with a verified assertion, refuses a replayed hand-off, signs out', async () => {
    const context = await chrome.newContext();
    const page = await context.newPage();
    const handOffs: string[] = [];
    page.on('request', (request) => {
      if (request.url().includes('/cdn-cgi/access/authorized')) handOffs.push(request.url());
    });

    // 1. The protected page sends the browser to the team login.
    await page.goto(`${appUrl}/docs/start?tab=1`);
    expect(new URL(page.url()).origin).toBe(h.url);
    expect(new URL(page.url()).pathname).toBe(`/cdn-cgi/access/login/wiki.localhost:${h.port}`);
    await expect(page.title()).resolves.toContain('Sign in to Company wiki');
    await page.screenshot({ path: path.join(ARTIFACTS, 'login-picker.png'), fullPage: true });

    // 2. One-time PIN: email, then the code caught by the SMTP server.
    await page.getByRole('button', { name: 'Sign in with a one-time PIN' }).click();
    await page.getByLabel('Email address').fill('alice@example.com');
    const pin = h.mailbox.nextPin('alice@example.com');
    await page.getByRole('button', { name: 'Send me a code' }).click();
    await page.getByLabel('One-time PIN').fill(await pin);
    await page.screenshot({ path: path.join(ARTIFACTS, 'login-pin.png'), fullPage: true });
    await page.getByRole('button', { name: 'Sign in' }).click();

    // 3. Back on the app, at the page first asked for; the origin verified the assertion.
    await page.waitForURL(`${appUrl}/docs/start?tab=1`);
    await expect(page.locator('#who').textContent()).resolves.toBe('Hello alice@example.com');
    expect(seen.filter((request) => request.path === '/docs/start?tab=1')).toEqual([
      { path: '/docs/start?tab=1', email: 'alice@example.com' },
    ]);
    await page.screenshot({ path: path.join(ARTIFACTS, 'app-after-login.png'), fullPage: true });
    const appCookie = (await context.cookies(appUrl)).find((cookie) => cookie.name === 'CF_Authorization');
    expect(appCookie).toMatchObject({ httpOnly: true, domain: 'wiki.localhost' });

    // 4. The hand-off URL replayed in another browser (leaked from a log or a screen) is refused
    //    and sets no session there.
    expect(handOffs).toHaveLength(1);
    const other = await chrome.newContext();
    const attacker = await other.newPage();
    const replay = await attacker.goto(handOffs[0]!);
    expect(replay!.status()).toBe(403);
    expect((await other.cookies(appUrl)).some((cookie) => cookie.name === 'CF_Authorization')).toBe(false);
    // Even with a CF_AppSession of its own, from a login it began itself.
    await attacker.goto(`${appUrl}/docs`);
    expect(new URL(attacker.url()).origin).toBe(h.url);
    expect((await attacker.goto(handOffs[0]!))!.status()).toBe(403);
    expect((await other.cookies(appUrl)).some((cookie) => cookie.name === 'CF_Authorization')).toBe(false);
    await other.close();

    // 5. Logout on the app host ends the session everywhere; the app asks for a login again.
    await page.goto(`${appUrl}/cdn-cgi/access/logout`);
    await expect(page.locator('h1').textContent()).resolves.toBe('You have signed out');
    await page.goto(`${appUrl}/docs`);
    expect(new URL(page.url()).origin).toBe(h.url);
    await expect(page.getByRole('button', { name: 'Sign in with a one-time PIN' }).count()).resolves.toBe(1);
    // A copy of the app cookie kept from before the logout no longer opens the app: the user's
    // revocation reached the proxy's snapshot.
    const before = seen.length;
    await context.addCookies([{ ...appCookie!, name: 'CF_Authorization' }]);
    await page.goto(`${appUrl}/docs/start?tab=1`);
    expect(new URL(page.url()).origin).toBe(h.url);
    expect(seen.length).toBe(before);
    await context.close();
  });
});
