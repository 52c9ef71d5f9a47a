// Concurrent full replaces of one app, and the configuration snapshot following API writes.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { databaseKinds } from '../support/databases.ts';
import { selfHostedApp, startTestApi, type TestApi } from './support.ts';

describe.each(databaseKinds)('concurrency and snapshot (%s)', (kind) => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi(kind);
  });
  afterAll(async () => {
    await api?.close();
  });

  test('20 parallel PUTs to one app leave one valid, fully-formed object', async () => {
    const created = await api.request('POST', `${api.access}/apps`, { json: selfHostedApp('race.example') });
    const id = created.body.result.id;
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, n) =>
        api.request('PUT', `${api.access}/apps/${id}`, {
          json: selfHostedApp('race.example', {
            name: `race ${n}`,
            session_duration: `${n + 1}h`,
            policies: [
              {
                name: `allow ${n}`,
                decision: 'allow',
                include: [{ email: { email: `user${n}@example.com` } }],
              },
              { name: `block ${n}`, decision: 'deny', include: [{ everyone: {} }] },
            ],
          }),
        }),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
    const final = (await api.request('GET', `${api.access}/apps/${id}`)).body.result;
    const n = Number(final.name.replace('race ', ''));
    // Every field comes from the same PUT, and only that PUT's two app-scoped policies remain.
    expect(final).toMatchObject({ aud: created.body.result.aud, session_duration: `${n + 1}h` });
    expect(final.policies.map((p: { name: string; precedence: number }) => [p.name, p.precedence])).toEqual([
      [`allow ${n}`, 1],
      [`block ${n}`, 2],
    ]);
    const stored = await api.gateway.gateway.repos.policies.listAll(api.accountId);
    expect(stored.filter((p) => p.appId === id)).toHaveLength(2);
  });

  test('the snapshot reflects an API write within a second, without touching the database on read', async () => {
    const { snapshot } = api.gateway.gateway;
    const before = snapshot.current();
    const rebuilt = new Promise<void>((resolve) => {
      const stop = snapshot.onRebuild((next) => {
        if (next.apps.some((entry) => entry.app.name === 'snap.example')) {
          stop();
          resolve();
        }
      });
    });
    const started = Date.now();
    const created = await api.request('POST', `${api.access}/apps`, {
      json: selfHostedApp('snap.example', {
        policies: [
          { name: 'Staff', decision: 'allow', include: [{ email_domain: { domain: 'example.com' } }] },
        ],
      }),
    });
    await rebuilt;
    expect(Date.now() - started).toBeLessThan(1000);
    const current = snapshot.current();
    expect(current.version).toBeGreaterThan(before.version);
    const entry = current.appsById.get(created.body.result.id)!;
    expect(entry.compiled!.policies.map((p) => p.name)).toEqual(['Staff']);
    expect(Object.isFrozen(entry.app)).toBe(true);
    expect(Object.isFrozen(before)).toBe(true);
    expect(before.appsById.has(created.body.result.id)).toBe(false);
  });
});
