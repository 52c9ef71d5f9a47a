// The wiki against a real gateway's keys (its /cdn-cgi/access/certs): it serves only requests
// with a valid assertion for its own AUD, and records every change under the asserted email.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../test/support/databases.ts';
import { startTestGateway, type TestGateway } from '../../test/support/gateway.ts';
import { assertion, forgedAssertion, randomAud, unsignedAssertion } from '../support/assertions.ts';
import { createWiki } from './server.ts';

let gateway: TestGateway;
let wiki: ReturnType<typeof createWiki>;
let base: string;
const aud = randomAud();
const dir = tempDir('gatehouse-wiki-');
const dataFile = path.join(dir.dir, 'wiki.json');

beforeAll(async () => {
  gateway = await startTestGateway();
  wiki = createWiki({ dataFile, teamDomain: gateway.url, aud });
  base = `http://${await wiki.listen(0)}`;
});

afterAll(async () => {
  await wiki?.close();
  await gateway?.close();
  dir.cleanup();
});

async function call(
  method: string,
  url: string,
  token: string | null,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const response = await fetch(`${base}${url}`, {
    method,
    headers: {
      accept: 'application/json',
      ...(token && { 'cf-access-jwt-assertion': token }),
      ...(body !== undefined && { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    redirect: 'manual',
  });
  const text = await response.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {}
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary fields.
  return { status: response.status, body: json as any, text, headers: response.headers };
}

describe('wiki: trust', () => {
  it('refuses a request without an assertion, even with the email header set', async () => {
    const response = await call('GET', '/api/pages', null, undefined, {
      'cf-access-authenticated-user-email': 'alice@example.com',
    });
    expect(response.status).toBe(403);
    expect(response.body.error).toMatch(/through Gatehouse/);
  });

  it('refuses forged, unsigned, other-audience, other-issuer and expired assertions', async () => {
    const bad = [
      await forgedAssertion({ issuer: gateway.url, kid: gateway.gateway.keys.signingKey().kid }, aud),
      unsignedAssertion(gateway, aud),
      await assertion(gateway, randomAud()),
      await assertion(gateway, aud, {}, { issuer: 'http://evil.example' }),
      await assertion(gateway, aud, {}, { lifetimeSeconds: -3600 }),
      'not-a-jwt',
      'x'.repeat(9000),
    ];
    for (const token of bad) {
      const response = await call('POST', '/api/pages', token, { slug: 'evil', title: 'x', body: 'y' });
      expect(response.status, token.slice(0, 40)).toBe(403);
    }
    expect(wiki.store.get('evil')).toBeNull();
  });

  it('refuses an assertion without an email (a service token acts for nobody here)', async () => {
    const token = await assertion(gateway, aud, { email: undefined, common_name: 'svc.access' });
    expect((await call('GET', '/api/pages', token)).status).toBe(403);
  });
});

describe('wiki: pages with history', () => {
  it('creates, reads, edits, searches, and records each change under the asserted email', async () => {
    const alice = await assertion(gateway, aud);
    const bob = await assertion(gateway, aud, { email: 'Bob@Example.com', sub: 'user-2' });
    // The email header is Gatehouse's to set; the author comes from the verified assertion only.
    const created = await call(
      'POST',
      '/api/pages',
      alice,
      { slug: 'onboarding', title: 'Onboarding', body: 'Welcome aboard' },
      { 'cf-access-authenticated-user-email': 'mallory@example.com' },
    );
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ slug: 'onboarding', revision: 1, updated_by: 'alice@example.com' });

    const edited = await call('PUT', '/api/pages/onboarding', bob, {
      title: 'Onboarding',
      body: 'Welcome aboard. Ask for a laptop on day one.',
      base_revision: 1,
    });
    expect(edited.status).toBe(200);
    expect(edited.body).toMatchObject({
      revision: 2,
      updated_by: 'bob@example.com',
      created_by: 'alice@example.com',
    });

    const stale = await call('PUT', '/api/pages/onboarding', alice, {
      title: 'x',
      body: 'y',
      base_revision: 1,
    });
    expect(stale.status).toBe(409);
    expect(stale.body.error).toMatch(/changed since revision 1 \(now 2 by bob@example.com\)/);

    const history = await call('GET', '/api/pages/onboarding/history', alice);
    expect(history.body.revisions.map((r: { author: string }) => r.author)).toEqual([
      'bob@example.com',
      'alice@example.com',
    ]);
    const found = await call('GET', '/api/pages?q=LAPTOP%20day', alice);
    expect(found.body.pages.map((p: { slug: string }) => p.slug)).toEqual(['onboarding']);
    expect((await call('GET', '/api/pages?q=nothing-like-this', alice)).body.pages).toEqual([]);

    // It is all in the wiki's own file, and a restart reads it back.
    const saved = JSON.parse(readFileSync(dataFile, 'utf8'));
    expect(saved.pages[0].revisions).toHaveLength(2);
    const again = createWiki({ dataFile, teamDomain: gateway.url, aud });
    expect(again.store.history('onboarding')!.map((r) => r.author)).toEqual([
      'bob@example.com',
      'alice@example.com',
    ]);
  });

  it('refuses bad input without writing anything', async () => {
    const alice = await assertion(gateway, aud);
    const before = readFileSync(dataFile, 'utf8');
    const cases: [unknown, number][] = [
      [{ slug: '../etc', title: 't', body: 'b' }, 400],
      [{ slug: 'ok', title: '', body: 'b' }, 400],
      [{ slug: 'ok', title: 't', body: 'b', author: 'mallory@example.com' }, 400],
      [{ slug: 'onboarding', title: 't', body: 'b' }, 409],
      ['{not json', 400],
      [{ slug: 'big', title: 't', body: 'x'.repeat(300_000) }, 413],
    ];
    for (const [body, status] of cases) {
      expect((await call('POST', '/api/pages', alice, body)).status, JSON.stringify(body).slice(0, 60)).toBe(
        status,
      );
    }
    expect((await call('PUT', '/api/pages/missing', alice, { title: 't', body: 'b' })).status).toBe(404);
    expect(readFileSync(dataFile, 'utf8')).toBe(before);
  });

  it('serves pages to people and refuses a cross-site form post', async () => {
    const alice = await assertion(gateway, aud);
    const page = await call('GET', '/pages/onboarding', alice, undefined, { accept: 'text/html' });
    expect(page.status).toBe(200);
    expect(page.text).toContain('bob@example.com');
    expect(page.text).toContain('signed in as <strong id="me">alice@example.com</strong>');

    const form = 'title=Hijacked&body=pwned&base_revision=2';
    const headers = { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' };
    const crossSite = await call('POST', '/pages/onboarding', alice, form, {
      ...headers,
      origin: 'http://evil.example',
    });
    expect(crossSite.status).toBe(403);
    const sameSite = await call('POST', '/pages/onboarding', alice, form, { ...headers, origin: base });
    expect(sameSite.status).toBe(303);
    expect(wiki.store.get('onboarding')).toMatchObject({
      title: 'Hijacked',
      updated_by: 'alice@example.com',
    });
  });
});
