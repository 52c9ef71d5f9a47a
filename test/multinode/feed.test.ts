// The PostgreSQL change feed and the cluster-wide lock, with two Store instances in this process
// standing for two nodes (each its own pool and its own LISTEN connection on one database).
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyRing } from '../../src/keys/keyring.ts';
import { decodeMasterKey } from '../../src/keys/master-key.ts';
import type { Change } from '../../src/store/changes.ts';
import {
  CHANGE_CHANNEL,
  LISTEN_APPLICATION_NAME,
  PostgresChangeFeed,
} from '../../src/store/changes-postgres.ts';
import { AccountRepository } from '../../src/store/repositories/accounts.ts';
import { SigningKeyRepository } from '../../src/store/repositories/signing-keys.ts';
import { Store } from '../../src/store/store.ts';
import { createTestDatabase, postgresServerUrl, type TestDatabase } from '../support/databases.ts';
import { waitUntil } from './support.ts';

describe.skipIf(!postgresServerUrl)(
  `PostgreSQL change feed${postgresServerUrl ? '' : ' (skipped: set GATEHOUSE_TEST_DATABASE_URL)'}`,
  () => {
    let database: TestDatabase;
    let one: Store;
    let two: Store;
    let accountId: string;
    const heard: Change[] = [];

    beforeAll(async () => {
      database = await createTestDatabase('postgres');
      one = await Store.open(database.url, {
        changes: new PostgresChangeFeed({ url: database.url, reconcileMs: 300 }),
      });
      await one.migrate();
      accountId = (
        await new AccountRepository(one).ensure({
          authDomain: 'http://127.0.0.1:1',
          keyRotationIntervalDays: 42,
        })
      ).accountId;
      two = await Store.open(database.url, {
        changes: new PostgresChangeFeed({ url: database.url, reconcileMs: 300 }),
      });
      two.changes.subscribe((change) => heard.push(change));
      one.changes.subscribe(() => {});
      expect(await (two.changes as PostgresChangeFeed).ready()).toBe(true);
      expect(await (one.changes as PostgresChangeFeed).ready()).toBe(true);
    });

    afterAll(async () => {
      await one?.close();
      await two?.close();
      await database?.cleanup();
    });

    const touch = (store: Store, table: string) =>
      store.write(async (tx, changed) => {
        await sql`update accounts set updated_at = ${new Date().toISOString()} where account_id = ${accountId}`.execute(
          tx,
        );
        changed({ table, accountId });
      });

    it('delivers a committed write to the other node, and never a rolled-back one', async () => {
      heard.length = 0;
      const started = performance.now();
      await touch(one, 'apps');
      await waitUntil(async () => heard.some((c) => c.table === 'apps'), 2000, 'apps change');
      console.log(
        `[multinode] NOTIFY: write on one node -> heard on the other ${(performance.now() - started).toFixed(0)} ms after the write began`,
      );
      await expect(
        one.write(async (tx, changed) => {
          changed({ table: 'policies', accountId });
          await sql`select pg_notify(${CHANGE_CHANNEL}, 'noise')`.execute(tx);
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      await new Promise((resolve) => setTimeout(resolve, 800));
      expect(heard.filter((c) => c.table === 'policies')).toEqual([]);
    });

    it('ignores hostile payloads on the channel', async () => {
      heard.length = 0;
      const bad = [
        'not json',
        JSON.stringify({ n: 'x', a: accountId, t: 'apps; drop table', v: 1 }),
        JSON.stringify({ n: 'x', a: 'short', t: 'apps', v: 1 }),
        JSON.stringify({ n: 'x', a: accountId, t: 'apps', v: -1 }),
        JSON.stringify({ n: 'x'.repeat(600), a: accountId, t: 'apps', v: 1 }),
      ];
      for (const payload of bad) await sql`select pg_notify(${CHANGE_CHANNEL}, ${payload})`.execute(one.db);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(heard).toEqual([]);
    });

    it('heals a missed notification at the next reconcile', async () => {
      heard.length = 0;
      // A version bump without NOTIFY: what a node sees when it was not listening at the time.
      await sql`update change_versions set version = version + 1 where account_id = ${accountId} and table_name = 'apps'`.execute(
        one.db,
      );
      const took = await waitUntil(async () => heard.some((c) => c.table === 'apps'), 3000, 'reconcile');
      console.log(
        `[multinode] missed notification healed by the reconcile after ${took.toFixed(0)} ms (interval 300 ms)`,
      );
    });

    it('re-follows after its LISTEN connection is killed, and resynchronises', async () => {
      heard.length = 0;
      // Terminate every LISTEN session on this database (both feeds).
      await sql`select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and application_name = ${LISTEN_APPLICATION_NAME}`.execute(one.db);
      await waitUntil(
        async () => (two.changes as PostgresChangeFeed).status().ok === false || heard.length > 0,
        2000,
        'lost',
      );
      expect(await (two.changes as PostgresChangeFeed).ready(5000)).toBe(true);
      // On reconnection everything known is announced once.
      await waitUntil(async () => heard.some((c) => c.table === 'apps'), 3000, 'resync');
      heard.length = 0;
      await touch(one, 'service_tokens');
      await waitUntil(async () => heard.some((c) => c.table === 'service_tokens'), 2000, 'after reconnect');
    });

    it('rotates exactly once when two nodes find rotation due at the same moment', async () => {
      const master = decodeMasterKey(randomBytes(32).toString('hex'), 'test');
      let now = Date.now();
      const clock = () => new Date(now);
      const rings = [one, two].map(
        (store) => new KeyRing(store, new SigningKeyRepository(store), accountId, master, clock),
      );
      // Both start together on an account without keys: one first key, not two.
      await Promise.all(rings.map((ring) => ring.start()));
      const keys = new SigningKeyRepository(one);
      expect(await keys.count(accountId)).toBe(1);
      now += 43 * 86_400_000;
      const results = await Promise.all(
        rings.flatMap((ring) => [ring.rotateIfDue(42), ring.rotateIfDue(42)]),
      );
      expect(results.filter((kid) => kid !== null)).toHaveLength(1);
      const rows = await keys.list(accountId);
      expect(rows).toHaveLength(2);
      expect(rows.filter((row) => row.retired_at === null)).toHaveLength(1);
      for (const ring of rings) ring.stop();
    });

    it('a new key is published at once but signs only after the activation delay', async () => {
      const master = decodeMasterKey(randomBytes(32).toString('hex'), 'test');
      const other = randomBytes(16).toString('hex');
      await sql`insert into accounts (account_id, name, auth_domain, session_duration, deny_unmatched_requests, key_rotation_interval_days, created_at, updated_at)
        values (${other}, 'delay', 'http://127.0.0.1:1', '24h', 1, 42, ${new Date().toISOString()}, ${new Date().toISOString()})`.execute(
        one.db,
      );
      let now = Date.now();
      const clock = () => new Date(now);
      const a = new KeyRing(one, new SigningKeyRepository(one), other, master, clock);
      const b = new KeyRing(two, new SigningKeyRepository(two), other, master, clock);
      await a.start({ activationDelayMs: 10_000 });
      await b.start({ activationDelayMs: 10_000 });
      const first = a.signingKey().kid;
      const second = await a.rotate();
      // Node B hears of it through the feed and publishes it, while both still sign with the first.
      await waitUntil(async () => b.verificationKey(second) !== null, 2000, 'B publishes the new key');
      expect(a.signingKey().kid).toBe(first);
      expect(b.signingKey().kid).toBe(first);
      expect(b.certs().keys.map((key) => key.kid)).toEqual([second, first]);
      now += 10_001;
      expect(a.signingKey().kid).toBe(second);
      expect(b.signingKey().kid).toBe(second);
      a.stop();
      b.stop();
    });
  },
);
