// The proxy's caches across configuration changes, through the real login and the management
// API: a login changes no configuration (no snapshot rebuild, the minted assertions stay); a
// revocation rebuilds and takes effect at once, yet keeps assertions it does not concern; an
// app's session length starts its assertions over.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appSession, formField, type LoginHarness, routeHost, startLoginHarness } from '../login/support.ts';
import { Browser } from '../support/browser.ts';
import { databaseKinds } from '../support/databases.ts';
import { claimsOf, type Origin, startOrigin } from './support.ts';

describe.each(databaseKinds)('proxy caches across snapshot rebuilds (%s)', (kind) => {
  let h: LoginHarness;
  let origin: Origin;
  let host: string;
  let appId: string;
  let aud: string;
  let pinIdp: string;
  let robot: { id: string; client_id: string; client_secret: string };

  beforeAll(async () => {
    origin = await startOrigin();
    h = await startLoginHarness({ server: { kind } });
    host = `wiki.localhost:${h.port}`;
    pinIdp = (await h.api('POST', '/identity_providers', { name: 'PIN', type: 'onetimepin', config: {} }))
      .body.result.id;
    robot = (await h.api('POST', '/service_tokens', { name: 'robot' })).body.result;
    const app = await h.api('POST', '/apps', {
      type: 'self_hosted',
      name: 'Wiki',
      domain: 'wiki.localhost',
      policies: [
        { name: 'robots', decision: 'non_identity', include: [{ service_token: { token_id: robot.id } }] },
        { name: 'staff', decision: 'allow', include: [{ email_domain: { domain: 'example.com' } }] },
      ],
    });
    expect(app.status).toBe(201);
    appId = app.body.result.id;
    aud = app.body.result.aud;
    await routeHost(h, 'wiki.localhost', origin.url);
  });
  afterAll(async () => {
    await h.close();
    await origin.close();
  });

  const snapshotVersion = () => h.gateway.gateway.snapshot.current().version;

  /** The assertion the origin receives for a service-token request (minted once, then cached). */
  async function robotAssertion(): Promise<string> {
    const browser = new Browser(h.port);
    const response = await browser.request(`http://${host}/robot`, {
      headers: { 'cf-access-client-id': robot.client_id, 'cf-access-client-secret': robot.client_secret },
    });
    expect(response.status).toBe(200);
    return String(origin.seen.at(-1)!.headers['cf-access-jwt-assertion']);
  }

  /** A whole PIN login started at the app host, through the hand-off; the browser holds the app cookie. */
  async function logIn(email: string): Promise<Browser> {
    const browser = new Browser(h.port);
    const login = `${h.url}/cdn-cgi/access/login/${host}?kid=${aud}&redirect_url=%2F&meta=${appSession(browser, host)}`;
    const flow = formField((await browser.request(login)).text, 'flow');
    await browser.request(`${h.url}/cdn-cgi/access/idp`, { form: { flow, idp: pinIdp } });
    const pin = h.mailbox.nextPin(email);
    await browser.request(`${h.url}/cdn-cgi/access/otp`, { form: { flow, email } });
    const done = await browser.request(`${h.url}/cdn-cgi/access/otp/verify`, {
      form: { flow, pin: await pin },
    });
    expect((await browser.request(done.location!)).status).toBe(302);
    expect(browser.jar.get(host)?.has('CF_Authorization')).toBe(true);
    return browser;
  }

  /** Waits into the next whole second: an assertion minted after this carries another `iat`. */
  const nextSecond = () => new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 20));
  /** Longer than the snapshot's rebuild debounce, so a rebuild a change announced has happened. */
  const settle = () => new Promise((resolve) => setTimeout(resolve, 300));

  it('keeps the snapshot and the minted assertions through a login, and through a revocation', async () => {
    const minted = await robotAssertion();
    const version = snapshotVersion();
    await nextSecond();

    const alice = await logIn('alice@example.com');
    await settle();
    expect(snapshotVersion()).toBe(version);
    expect(await robotAssertion()).toBe(minted);
    expect((await alice.request(`http://${host}/page`)).status).toBe(200);

    // revoke_user rebuilds the snapshot and refuses Alice's token at once; the robot's
    // assertion has nothing to do with her and stays.
    const revoked = await h.api('POST', '/organizations/revoke_user', { email: 'alice@example.com' });
    expect(revoked.body.result).toBe(true);
    await h.gateway.gateway.snapshot.refresh();
    expect(snapshotVersion()).toBeGreaterThan(version);
    expect((await alice.request(`http://${host}/page`)).status).toBe(302);
    expect(await robotAssertion()).toBe(minted);
  });

  it('mints again when the app’s session length changes', async () => {
    const before = await robotAssertion();
    await nextSecond();
    const current = (await h.api('GET', `/apps/${appId}`)).body.result;
    const updated = await h.api('PUT', `/apps/${appId}`, { ...current, session_duration: '30m' });
    expect(updated.status, JSON.stringify(updated.body)).toBe(200);
    await h.gateway.gateway.snapshot.refresh();
    const after = await robotAssertion();
    expect(after).not.toBe(before);
    const claims = claimsOf(after) as { iat: number; exp: number };
    expect(claims.exp - claims.iat).toBe(1800);
  });
});
