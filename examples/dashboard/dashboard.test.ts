// The admin dashboard in the running demo: a person signs in through Gatehouse and sees users
// and access events read from the management API; notes are recorded under the asserted
// email; requests that did not come through Gatehouse are refused.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchVia } from '../shared/connect.ts';
import { forgedAssertion } from '../support/assertions.ts';
import { type Browser, type DemoHarness, startDemoHarness } from '../support/demo.ts';

let h: DemoHarness;
let browser: Browser;
let dashboard: string;

beforeAll(async () => {
  h = await startDemoHarness('alice@example.com');
  dashboard = `http://dashboard.localhost:${h.port}`;
  const login = await h.login(`dashboard.localhost:${h.port}`, 'alice@example.com');
  browser = login.browser;
  expect(login.landed.status).toBe(200);
});
afterAll(() => h?.close());

describe('dashboard', () => {
  it('shows users and recent access events to the signed-in person, through Gatehouse', async () => {
    const page = await browser(`${dashboard}/`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('signed in as <strong id="me">alice@example.com</strong>');
    const users = page.text.slice(page.text.indexOf('id="users"'), page.text.indexOf('id="events"'));
    expect(users).toContain('alice@example.com');
    // The login just made is an access event for the dashboard's host.
    const events = page.text.slice(page.text.indexOf('id="events"'));
    expect(events).toMatch(/alice@example\.com<\/td><td>dashboard\.localhost/);
  });

  it('records notes under the asserted email and keeps them in its own file', async () => {
    const posted = await postJson(`${dashboard}/api/notes`, { subject: 'Bob@Example.com', text: 'on leave' });
    expect(posted.status).toBe(201);
    expect(posted.body).toMatchObject({ subject: 'bob@example.com', author: 'alice@example.com' });
    const saved = JSON.parse(readFileSync(path.join(h.database.dataDir, 'dashboard.json'), 'utf8'));
    expect(saved.notes).toEqual([expect.objectContaining({ author: 'alice@example.com', text: 'on leave' })]);
    const bad = await postJson(`${dashboard}/api/notes`, { subject: 'not-an-email', text: 'x' });
    expect(bad.status).toBe(400);
    const notes = JSON.parse((await browser(`${dashboard}/api/notes`)).text);
    expect(notes.notes).toHaveLength(1);
  });

  it('refuses requests that bypass Gatehouse, forged or minted for another app', async () => {
    const origin = `http://127.0.0.1:${h.ports.dashboard}/api/users`;
    const certs = (await (
      await fetchVia(h.demo.listen)(`${h.demo.teamDomain}/cdn-cgi/access/certs`)
    ).json()) as {
      public_cert: { kid: string };
    };
    const signer = { issuer: h.demo.teamDomain, kid: certs.public_cert.kid };
    // A genuine assertion, but for the wiki: the dashboard checks its own AUD.
    const wikiPage = await h.login(`wiki.localhost:${h.port}`, 'alice@example.com');
    const cases: Record<string, string>[] = [
      {},
      { 'cf-access-authenticated-user-email': 'alice@example.com' },
      { 'cf-access-jwt-assertion': await forgedAssertion(signer, h.demo.seed.apps.dashboard.aud) },
      { 'cf-access-jwt-assertion': wikiPage.token },
    ];
    for (const headers of cases) {
      const response = await fetch(origin, { headers: { accept: 'application/json', ...headers } });
      expect(response.status, JSON.stringify(headers).slice(0, 60)).toBe(403);
    }
  });
});

async function postJson(url: string, json: unknown) {
  const page = await browser(url, { json });
  return { status: page.status, body: JSON.parse(page.text) as unknown };
}
