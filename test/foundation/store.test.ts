// The store and its foundation repositories, on SQLite always and on PostgreSQL when
// GATEHOUSE_TEST_DATABASE_URL is set: migrations, the one account, ingress rules, API tokens,
// signing keys, and change notifications that only follow a commit.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IngressRule } from '../../src/config/settings.ts';
import type { Change } from '../../src/store/changes.ts';
import { PostgresChangeFeed } from '../../src/store/changes-postgres.ts';
import { migrations } from '../../src/store/migrations.ts';
import { AccountRepository } from '../../src/store/repositories/accounts.ts';
import { ApiTokenRepository } from '../../src/store/repositories/api-tokens.ts';
import { IngressRepository } from '../../src/store/repositories/ingress.ts';
import { SigningKeyRepository, type StoredSigningKey } from '../../src/store/repositories/signing-keys.ts';
import { isUniqueViolation, redactDatabaseUrl, Store, StoreError } from '../../src/store/store.ts';
import { createTestDatabase, databaseKinds, type TestDatabase, tempDir } from '../support/databases.ts';

const defaults = { authDomain: 'http://127.0.0.1:1', keyRotationIntervalDays: 42 };

/** Inserts an extra account directly, to check that repositories keep accounts apart. */
async function insertAccount(store: Store): Promise<string> {
  const accountId = randomBytes(16).toString('hex');
  const now = new Date().toISOString();
  await store.db
    .insertInto('accounts')
    .values({
      account_id: accountId,
      name: 'other',
      auth_domain: 'https://other.example.com',
      session_duration: '24h',
      deny_unmatched_requests: 1,
      key_rotation_interval_days: 42,
      created_at: now,
      updated_at: now,
    })
    .execute();
  return accountId;
}

async function catchError(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

describe.each(databaseKinds)('store on %s', (kind) => {
  let database: TestDatabase;
  let store: Store;
  let accountId: string;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    store = await Store.open(database.url);
    await store.migrate();
    accountId = (await new AccountRepository(store).ensure(defaults)).accountId;
    // On PostgreSQL the first subscription opens the LISTEN connection, whose first reconcile
    // announces every table once; a test subscribing first would catch those announcements
    // (recordUse's "no change" test did, now and then). Start following here and wait it out.
    if (store.changes instanceof PostgresChangeFeed) {
      const unsubscribe = store.changes.subscribe(() => {});
      expect(await store.changes.ready()).toBe(true);
      unsubscribe();
    }
  });
  afterAll(async () => {
    await store?.close();
    await database?.cleanup();
  });

  describe('migrations', () => {
    it('are idempotent: migrating twice, and from a second connection, changes nothing', async () => {
      const fresh = await createTestDatabase(kind);
      const first = await Store.open(fresh.url);
      const second = await Store.open(fresh.url);
      try {
        expect(first.dialect).toBe(kind);
        await first.migrate();
        await first.migrate();
        await second.migrate();
        const applied = await sql<{ name: string }>`select name from kysely_migration`.execute(first.db);
        expect(applied.rows.map((row) => row.name).sort()).toEqual(Object.keys(migrations).sort());
        // Every foundation table exists and is empty.
        for (const table of ['accounts', 'signing_keys', 'api_tokens', 'ingress_rules'] as const) {
          const rows = await first.db.selectFrom(table).selectAll().execute();
          expect(rows).toEqual([]);
        }
        expect(await first.ping()).toBe(true);
      } finally {
        await second.close();
        await first.close();
        await fresh.cleanup();
      }
    });
  });

  describe('accounts', () => {
    it('ensure creates one account with a 32-hex id and returns it on later calls', async () => {
      const accounts = new AccountRepository(store);
      const account = await accounts.ensure({
        authDomain: 'https://ignored.example.com',
        keyRotationIntervalDays: 7,
      });
      expect(account.accountId).toBe(accountId);
      expect(account.accountId).toMatch(/^[0-9a-f]{32}$/);
      expect(account.authDomain).toBe(defaults.authDomain);
      expect(account.keyRotationIntervalDays).toBe(42);
      expect(account.denyUnmatchedRequests).toBe(true);
    });

    it('concurrent ensure calls, on one connection and on several, create exactly one account', async () => {
      const fresh = await createTestDatabase(kind);
      const first = await Store.open(fresh.url);
      await first.migrate();
      const others = [await Store.open(fresh.url), await Store.open(fresh.url)];
      try {
        const results = await Promise.all(
          [first, first, ...others].map((s) => new AccountRepository(s).ensure(defaults)),
        );
        const rows = await first.db.selectFrom('accounts').select('account_id').execute();
        expect(rows).toHaveLength(1);
        expect(new Set(results.map((a) => a.accountId))).toEqual(new Set([rows[0]!.account_id]));
      } finally {
        for (const s of others) await s.close();
        await first.close();
        await fresh.cleanup();
      }
    });

    it('update changes the organisation settings', async () => {
      const fresh = await createTestDatabase(kind);
      const own = await Store.open(fresh.url);
      try {
        await own.migrate();
        const accounts = new AccountRepository(own);
        const { accountId: id } = await accounts.ensure(defaults);
        const updated = await accounts.update(id, {
          denyUnmatchedRequests: false,
          keyRotationIntervalDays: 3,
        });
        expect(updated.denyUnmatchedRequests).toBe(false);
        expect(updated.keyRotationIntervalDays).toBe(3);
        expect((await accounts.get())?.keyRotationIntervalDays).toBe(3);
      } finally {
        await own.close();
        await fresh.cleanup();
      }
    });
  });

  describe('ingress rules', () => {
    it('replace and get round-trip every field, in order', async () => {
      const ingress = new IngressRepository(store);
      const rules: IngressRule[] = [
        {
          hostname: 'wiki.example.com',
          path: '^/api/',
          service: 'https://10.0.0.5:8443',
          originRequest: {
            connectTimeout: '10s',
            noTLSVerify: true,
            httpHostHeader: 'wiki',
            caPool: '/ca.pem',
          },
        },
        { hostname: 'wiki.example.com', service: 'http://10.0.0.5:8080' },
        { service: 'http_status:404' },
      ];
      await ingress.replace(accountId, rules);
      expect(await ingress.get(accountId)).toEqual(rules);
    });

    it('keeps the order of a long list across insert chunks, and a shorter list replaces it whole', async () => {
      const ingress = new IngressRepository(store);
      const many: IngressRule[] = Array.from({ length: 450 }, (_, i) => ({
        hostname: `app-${449 - i}.example.com`, // reverse alphabetical, so only position orders them
        service: `http://127.0.0.1:${10_000 + i}`,
      }));
      await ingress.replace(accountId, many);
      expect(await ingress.get(accountId)).toEqual(many);

      const few: IngressRule[] = [{ hostname: 'only.example.com', service: 'http://127.0.0.1:1' }];
      await ingress.replace(accountId, few);
      expect(await ingress.get(accountId)).toEqual(few);

      await ingress.replace(accountId, []);
      expect(await ingress.get(accountId)).toEqual([]);
    });

    it("one account's rules never touch another's", async () => {
      const ingress = new IngressRepository(store);
      const other = await insertAccount(store);
      await ingress.replace(accountId, [{ service: 'http_status:503' }]);
      await ingress.replace(other, [{ service: 'http_status:404' }]);
      expect(await ingress.get(accountId)).toEqual([{ service: 'http_status:503' }]);
      expect(await ingress.get(other)).toEqual([{ service: 'http_status:404' }]);
      await store.db.deleteFrom('accounts').where('account_id', '=', other).execute();
    });
  });

  describe('API tokens', () => {
    it('create, findBySecretHash and list', async () => {
      const tokens = new ApiTokenRepository(store);
      const secretHash = createHash('sha256').update(randomBytes(30)).digest('hex');
      const id = randomBytes(16).toString('hex');
      const created = await tokens.create({
        id,
        accountId,
        name: 'deploy',
        secretHash,
        permissions: ['Access: Apps and Policies Read', 'Cloudflare Tunnel Write'],
        expiresOn: '2099-01-01T00:00:00.000Z',
      });
      expect(created).toMatchObject({
        id,
        accountId,
        name: 'deploy',
        permissions: ['Access: Apps and Policies Read', 'Cloudflare Tunnel Write'],
        status: 'active',
        expiresOn: '2099-01-01T00:00:00.000Z',
        lastUsedOn: null,
      });
      expect(await tokens.findBySecretHash(secretHash)).toEqual(created);
      expect(await tokens.findBySecretHash(createHash('sha256').update('other').digest('hex'))).toBeNull();
      expect((await tokens.list(accountId)).map((t) => t.id)).toContain(id);
    });

    it('recordUse sets last_used_on of each token given, in one write', async () => {
      const tokens = new ApiTokenRepository(store);
      const make = (name: string) =>
        tokens.create({
          id: randomBytes(16).toString('hex'),
          accountId,
          name,
          secretHash: createHash('sha256').update(randomBytes(30)).digest('hex'),
          permissions: ['Access: Audit Logs Read'],
        });
      const [a, b, untouched] = [await make('a'), await make('b'), await make('c')];
      const changes: Change[] = [];
      const unsubscribe = store.changes.subscribe((change) => changes.push(change));
      try {
        await tokens.recordUse(
          new Map([
            [a.id, '2030-01-01T00:00:00.000Z'],
            [b.id, '2030-01-02T00:00:00.000Z'],
          ]),
        );
        await tokens.recordUse(new Map()); // nothing to do, no write
      } finally {
        unsubscribe();
      }
      expect((await tokens.get(a.id))?.lastUsedOn).toBe('2030-01-01T00:00:00.000Z');
      expect((await tokens.get(b.id))?.lastUsedOn).toBe('2030-01-02T00:00:00.000Z');
      expect((await tokens.get(untouched.id))?.lastUsedOn).toBeNull();
      // Bookkeeping, not configuration: no cache needs to rebuild for it.
      expect(changes).toEqual([]);
    });

    it('refuses a second token with the same secret hash as a unique violation', async () => {
      const tokens = new ApiTokenRepository(store);
      const secretHash = createHash('sha256').update(randomBytes(30)).digest('hex');
      const input = { accountId, name: 'x', secretHash, permissions: ['Access: Audit Logs Read'] };
      await tokens.create({ ...input, id: randomBytes(16).toString('hex') });
      const error = await catchError(tokens.create({ ...input, id: randomBytes(16).toString('hex') }));
      expect(isUniqueViolation(error)).toBe(true);
    });
  });

  describe('signing keys', () => {
    const key = (kid: string, createdAt: string): StoredSigningKey => ({
      kid,
      account_id: '', // set per test
      private_key_encrypted: `encrypted-${kid}`,
      public_jwk: JSON.stringify({ kid }),
      certificate_pem: `cert-${kid}`,
      created_at: createdAt,
      retired_at: null,
    });

    it('rotate retires the current key and inserts the new one; there is always exactly one current', async () => {
      const own = await insertAccount(store);
      const keys = new SigningKeyRepository(store);
      const kids = ['a', 'b', 'c'].map((c) => c.repeat(64));
      const times = ['2030-01-01T00:00:00.000Z', '2030-02-01T00:00:00.000Z', '2030-03-01T00:00:00.000Z'];
      for (let i = 0; i < 3; i++) {
        await keys.rotate({ ...key(kids[i]!, times[i]!), account_id: own }, times[i]!);
        const rows = await keys.list(own);
        expect(rows.filter((row) => row.retired_at === null).map((row) => row.kid)).toEqual([kids[i]]);
      }
      const rows = await keys.list(own);
      // Newest first; each key retired when the next one took over.
      expect(rows.map((row) => [row.kid, row.retired_at])).toEqual([
        [kids[2], null],
        [kids[1], times[2]],
        [kids[0], times[1]],
      ]);
      expect(await keys.count(own)).toBe(3);
      // Another account's keys are left alone.
      expect(await keys.count(accountId)).toBe(0);

      // Removes only keys retired before the cutoff, never the current one.
      expect(await keys.deleteRetiredBefore(own, '2030-01-15T00:00:00.000Z')).toBe(0);
      expect(await keys.deleteRetiredBefore(own, '2030-02-15T00:00:00.000Z')).toBe(1);
      expect((await keys.list(own)).map((row) => row.kid)).toEqual([kids[2], kids[1]]);
      await store.db.deleteFrom('accounts').where('account_id', '=', own).execute();
    });

    it('a rotation whose insert fails leaves the current key current', async () => {
      const own = await insertAccount(store);
      const keys = new SigningKeyRepository(store);
      const first = { ...key('d'.repeat(64), '2030-01-01T00:00:00.000Z'), account_id: own };
      await keys.rotate(first, first.created_at);
      // Same kid again: the insert violates the primary key after the update ran.
      const error = await catchError(
        keys.rotate({ ...first, created_at: '2030-02-01T00:00:00.000Z' }, 'later'),
      );
      expect(isUniqueViolation(error)).toBe(true);
      expect((await keys.list(own)).map((row) => [row.kid, row.retired_at])).toEqual([[first.kid, null]]);
      await store.db.deleteFrom('accounts').where('account_id', '=', own).execute();
    });
  });

  describe('change notifications', () => {
    it('are published after the commit, never inside the transaction', async () => {
      const seen: { change: Change; insideTransaction: boolean }[] = [];
      let insideTransaction = true;
      const unsubscribe = store.changes.subscribe((change) => seen.push({ change, insideTransaction }));
      try {
        await store.write(async (tx, changed) => {
          await tx
            .insertInto('ingress_rules')
            .values({
              account_id: accountId,
              position: 9000,
              rule: '{"service":"http_status:404"}',
              updated_at: 'x',
            })
            .execute();
          changed({ table: 'ingress_rules', accountId });
          changed({ table: 'ingress_rules', accountId, id: 'second' });
          // Give any eager publisher every chance to run before the commit.
          await new Promise((resolve) => setTimeout(resolve, 20));
          expect(seen).toEqual([]);
          insideTransaction = false;
        });
      } finally {
        unsubscribe();
      }
      expect(seen.every((s) => !s.insideTransaction)).toBe(true);
      expect(seen.map((s) => s.change)).toEqual([
        { table: 'ingress_rules', accountId },
        { table: 'ingress_rules', accountId, id: 'second' },
      ]);
      await store.db.deleteFrom('ingress_rules').where('position', '=', 9000).execute();
    });

    it('a listener reading the database sees the committed write', async () => {
      const reads: Promise<number>[] = [];
      const unsubscribe = store.changes.subscribe((change) => {
        if (change.table === 'ingress_rules') {
          reads.push(new IngressRepository(store).get(accountId).then((rules) => rules.length));
        }
      });
      try {
        await new IngressRepository(store).replace(accountId, [
          { service: 'http_status:404' },
          { service: 'http_status:503' },
        ]);
      } finally {
        unsubscribe();
      }
      expect(await Promise.all(reads)).toEqual([2]);
    });

    it('a write that throws publishes nothing and leaves no rows', async () => {
      const ingress = new IngressRepository(store);
      await ingress.replace(accountId, [{ service: 'http_status:404' }]);
      const seen: Change[] = [];
      const unsubscribe = store.changes.subscribe((change) => seen.push(change));
      const failure = new Error('validation failed after the inserts');
      try {
        const error = await catchError(
          store.write(async (tx, changed) => {
            await tx.deleteFrom('ingress_rules').where('account_id', '=', accountId).execute();
            for (let position = 0; position < 5; position++) {
              await tx
                .insertInto('ingress_rules')
                .values({
                  account_id: accountId,
                  position,
                  rule: '{"service":"http_status:500"}',
                  updated_at: 'x',
                })
                .execute();
            }
            changed({ table: 'ingress_rules', accountId });
            throw failure;
          }),
        );
        expect(error).toBe(failure);
      } finally {
        unsubscribe();
      }
      expect(seen).toEqual([]);
      expect(await ingress.get(accountId)).toEqual([{ service: 'http_status:404' }]);
    });

    it('a failing listener does not undo the write or stop the other listeners', async () => {
      const seen: Change[] = [];
      const unsubscribeBad = store.changes.subscribe(() => {
        throw new Error('cache rebuild failed');
      });
      const unsubscribeGood = store.changes.subscribe((change) => seen.push(change));
      try {
        await new IngressRepository(store).replace(accountId, [{ service: 'http_status:418' }]);
      } finally {
        unsubscribeBad();
        unsubscribeGood();
      }
      expect(seen).toEqual([{ table: 'ingress_rules', accountId }]);
      expect(await new IngressRepository(store).get(accountId)).toEqual([{ service: 'http_status:418' }]);
    });
  });

  describe('isUniqueViolation', () => {
    it('is true for duplicate primary and unique keys, false for other errors', async () => {
      const duplicateAccount = await catchError(
        store.db
          .insertInto('accounts')
          .values({
            account_id: accountId,
            name: 'dup',
            auth_domain: 'x',
            session_duration: '24h',
            deny_unmatched_requests: 1,
            key_rotation_interval_days: 1,
            created_at: 'x',
            updated_at: 'x',
          })
          .execute(),
      );
      expect(isUniqueViolation(duplicateAccount)).toBe(true);

      const notNull = await catchError(
        store.db
          .insertInto('ingress_rules')
          // biome-ignore lint/suspicious/noExplicitAny: a NOT NULL violation on purpose
          .values({ account_id: accountId, position: 77, rule: null as any, updated_at: 'x' })
          .execute(),
      );
      expect(notNull).toBeInstanceOf(Error);
      expect(isUniqueViolation(notNull)).toBe(false);

      const foreignKey = await catchError(
        store.db
          .insertInto('ingress_rules')
          .values({ account_id: 'f'.repeat(32), position: 0, rule: '{}', updated_at: 'x' })
          .execute(),
      );
      expect(foreignKey).toBeInstanceOf(Error);
      expect(isUniqueViolation(foreignKey)).toBe(false);

      expect(isUniqueViolation(new Error('duplicate'))).toBe(false);
      expect(isUniqueViolation(null)).toBe(false);
    });
  });
});

describe.each(databaseKinds)('an unmigratable database on %s', (kind) => {
  it('migrate fails with a StoreError naming the database and the migration, and applies nothing', async () => {
    const database = await createTestDatabase(kind);
    const store = await Store.open(database.url);
    try {
      // A table of the same name but another shape, left by some other program.
      await sql`create table signing_keys (something_else integer)`.execute(store.db);
      const error = await catchError(store.migrate());
      expect(error).toBeInstanceOf(StoreError);
      expect((error as Error).message).toContain(
        `cannot migrate database ${redactDatabaseUrl(database.url)}`,
      );
      expect((error as Error).message).toContain('(migration 0001_foundation)');
      // The failed migration rolled back whole: no accounts table half-created beside it.
      expect(await catchError(store.db.selectFrom('accounts').selectAll().execute())).toBeInstanceOf(Error);
    } finally {
      await store.close();
      await database.cleanup();
    }
  });
});

describe('Store.open', () => {
  it('refuses a file that is not an SQLite database', async () => {
    const temp = tempDir('gatehouse-notdb-');
    try {
      const file = path.join(temp.dir, 'notes.db');
      writeFileSync(file, 'These are notes, not an SQLite database.\n'.repeat(200));
      const error = await catchError(Store.open(`sqlite:${file}`));
      expect(error).toBeInstanceOf(StoreError);
      expect((error as Error).message).toBe(`cannot open database sqlite:${file}: file is not a database`);
      expect(readFileSync(file, 'utf8')).toBe('These are notes, not an SQLite database.\n'.repeat(200));
    } finally {
      temp.cleanup();
    }
  });

  it('refuses an unsupported URL without showing its password', async () => {
    const error = await catchError(Store.open('mysql://root:hunter2@127.0.0.1/gatehouse'));
    expect(error).toBeInstanceOf(StoreError);
    expect((error as Error).message).toContain('unsupported database URL');
    expect((error as Error).message).not.toContain('hunter2');
  });
});

describe('redactDatabaseUrl', () => {
  it('hides the password and keeps everything else', () => {
    expect(redactDatabaseUrl('postgres://gatehouse:s3cret@db.internal:5432/gatehouse')).toBe(
      'postgres://gatehouse:***@db.internal:5432/gatehouse',
    );
    expect(redactDatabaseUrl('postgresql://u:s3cret@h/db?sslmode=require')).toBe(
      'postgresql://u:***@h/db?sslmode=require',
    );
  });

  it('leaves URLs without a password as they are', () => {
    for (const url of [
      'postgres://postgres@127.0.0.1:5432/test',
      'postgres://h/db',
      'sqlite:./data/gatehouse.db',
    ]) {
      expect(redactDatabaseUrl(url)).toBe(url);
    }
  });

  it('hides passwords that contain @ or sit in the query string', () => {
    const atSign = redactDatabaseUrl('postgres://u:p@ss@word@db.internal/gatehouse');
    expect(atSign).toBe('postgres://u:***@db.internal/gatehouse');
    const query = redactDatabaseUrl(
      'postgres://db.internal/gatehouse?user=u&password=s3cret&sslmode=require',
    );
    expect(query).not.toContain('s3cret');
    expect(query).toContain('sslmode=require');
  });
});
