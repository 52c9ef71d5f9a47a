// Managed OAuth's clients in the real store: registrations expire when unused (each use extends
// them), and URL client_ids come from the hardened document fetcher, filtered by the app's
// redirect allow-list, never from a stored row.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientMetadataFetcher } from '../../src/oidc/managed/client-metadata-document.ts';
import type { DcrSettings } from '../../src/oidc/managed/registration-policy.ts';
import { UNUSED_REGISTRATION_TTL_SECONDS } from '../../src/oidc/managed/registration-policy.ts';
import { ManagedOAuthStorage } from '../../src/oidc/managed/storage.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';

const kind = process.env.GATEHOUSE_TEST_DATABASE_URL ? 'postgres' : 'sqlite';
const DAY = 86_400_000;
let g: TestGateway;

beforeAll(async () => {
  g = await startTestGateway({ kind });
});
afterAll(() => g.close());

const settings: DcrSettings = {
  enabled: true,
  allow_any_on_localhost: false,
  allow_any_on_loopback: true,
  allowed_uris: [],
};

describe('managed OAuth client storage', () => {
  it('expires a registration after 30 days without use; each use extends it', async () => {
    expect(UNUSED_REGISTRATION_TTL_SECONDS).toBe(30 * 86_400);
    let now = Date.now();
    const storage = new ManagedOAuthStorage(
      g.gateway.store,
      g.gateway.account.accountId,
      new ClientMetadataFetcher(),
      () => settings,
      () => now,
    );
    const clients = storage.adapterFactory('app-1')('Client');
    await clients.upsert('client-a', { client_id: 'client-a', redirect_uris: ['http://127.0.0.1/cb'] });
    await clients.upsert('client-b', { client_id: 'client-b', redirect_uris: ['http://127.0.0.1/cb'] });
    now += 20 * DAY;
    expect(await clients.find('client-a')).toMatchObject({ client_id: 'client-a' });
    now += 20 * DAY; // a used 20 days ago, b never since registration 40 days ago
    expect(await clients.find('client-a')).toMatchObject({ client_id: 'client-a' });
    expect(await clients.find('client-b')).toBeUndefined();
    now += 31 * DAY;
    expect(await clients.find('client-a')).toBeUndefined();
    // Another app's namespace never sees them.
    expect(await storage.adapterFactory('app-2')('Client').find('client-a')).toBeUndefined();
  });

  it('does not take a URL client_id from stored rows, and refuses documents it cannot fetch', async () => {
    let fetched = 0;
    const storage = new ManagedOAuthStorage(
      g.gateway.store,
      g.gateway.account.accountId,
      new ClientMetadataFetcher({
        resolve: async () => {
          fetched++;
          return [{ address: '10.0.0.1', family: 4 }];
        },
      }),
      () => settings,
    );
    const clients = storage.adapterFactory('app-1')('Client');
    const url = 'https://client.example/metadata.json';
    // A row stored under a URL (registration generates its own ids, so only a hand-made one) is ignored.
    await clients.upsert(url, { client_id: url, redirect_uris: ['http://127.0.0.1/cb'] });
    expect(await clients.find(url)).toBeUndefined();
    expect(fetched).toBe(1);
  });
});
