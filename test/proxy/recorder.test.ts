// The proxy's recorder while PostgreSQL comes and goes: one error per outage (not one per flush),
// one note on recovery, rows written again after it; other failures are reported every time.
// The outage is real: the recorder's store reaches the test database through a TCP relay that
// the test cuts (live connections destroyed, new ones refused) and restores.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProxyRecorder } from '../../src/proxy/recorder.ts';
import { InProcessChangeFeed } from '../../src/store/changes.ts';
import { AccessRequestRepository } from '../../src/store/repositories/access-requests.ts';
import { ServiceTokenRepository } from '../../src/store/repositories/service-tokens.ts';
import { isDatabaseUnavailable, Store } from '../../src/store/store.ts';
import { postgresServerUrl } from '../support/databases.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';

/** A TCP relay to `target` that can be cut and restored. */
async function startRelay(target: { host: string; port: number }) {
  let up = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!up) return client.destroy();
    const upstream = net.connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      up = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      up = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe.skipIf(!postgresServerUrl)('proxy recorder across a database outage (postgres)', () => {
  let gateway: TestGateway;
  let relay: Awaited<ReturnType<typeof startRelay>>;
  let store: Store;
  const errors: unknown[] = [];
  let recoveries = 0;
  let recorder: ProxyRecorder;
  let n = 0;

  /** Queues one access-request row under a new key (so deduplication never hides it) and flushes. */
  async function recordOne(): Promise<string> {
    const appDomain = `app-${++n}.test`;
    recorder.accessRequest(`k:${n}`, () => ({ action: 'service_token', allowed: true, appDomain }));
    await recorder.flush();
    return appDomain;
  }

  const written = async (appDomain: string) =>
    (
      await gateway.gateway.store.db
        .selectFrom('access_requests')
        .select('app_domain')
        .where('app_domain', '=', appDomain)
        .execute()
    ).length;

  beforeAll(async () => {
    gateway = await startTestGateway({ kind: 'postgres' });
    const direct = new URL(gateway.database.url);
    relay = await startRelay({ host: direct.hostname, port: Number(direct.port || 5432) });
    const relayed = new URL(gateway.database.url);
    relayed.hostname = '127.0.0.1';
    relayed.port = String(relay.port);
    store = await Store.open(relayed.toString(), { changes: new InProcessChangeFeed() });
    recorder = new ProxyRecorder(
      {
        serviceTokens: new ServiceTokenRepository(store),
        accessRequests: new AccessRequestRepository(store),
      },
      gateway.gateway.account.accountId,
      {
        flushEveryMs: 3_600_000,
        onError: (error) => errors.push(error),
        onRecovered: () => recoveries++,
      },
    );
  });

  afterAll(async () => {
    await recorder?.close();
    await store?.close();
    await relay?.close();
    await gateway?.close();
  });

  it('reports an outage once, notes the recovery once, and writes again after it', async () => {
    expect(await written(await recordOne())).toBe(1);
    expect(errors).toHaveLength(0);

    relay.cut();
    const lost: string[] = [];
    for (let flush = 0; flush < 4; flush++) lost.push(await recordOne());
    expect(errors).toHaveLength(1);
    expect(isDatabaseUnavailable(errors[0])).toBe(true);
    expect(recoveries).toBe(0);

    relay.restore();
    const after = await recordOne();
    expect(recoveries).toBe(1);
    expect(errors).toHaveLength(1);
    expect(await written(after)).toBe(1);
    // Rows of the outage are dropped, not replayed later into a growing backlog.
    for (const domain of lost) expect(await written(domain)).toBe(0);
    await recordOne();
    expect(recoveries).toBe(1);

    // A second outage is a new one: reported again.
    relay.cut();
    await recordOne();
    await recordOne();
    expect(errors).toHaveLength(2);
    relay.restore();
    await recordOne();
    expect(recoveries).toBe(2);
  });

  it('reports every failure that is not an outage', async () => {
    const failures: unknown[] = [];
    const orphan = new ProxyRecorder(
      {
        serviceTokens: new ServiceTokenRepository(store),
        accessRequests: new AccessRequestRepository(store),
      },
      // No such account: the row violates its foreign key, a bad write rather than a lost database.
      'no-such-account',
      { flushEveryMs: 3_600_000, onError: (error) => failures.push(error) },
    );
    for (let flush = 0; flush < 3; flush++) {
      orphan.accessRequest(`o:${flush}`, () => ({ action: 'service_token', allowed: false }));
      await orphan.flush();
    }
    await orphan.close();
    expect(failures).toHaveLength(3);
    expect(failures.some(isDatabaseUnavailable)).toBe(false);
  });
});
