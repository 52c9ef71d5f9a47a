// The store: one Kysely database over SQLite (better-sqlite3) or PostgreSQL (pg), migrations,
// and the one way to write: `write()`, a transaction whose changes are announced after commit.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import {
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteAdapter,
  SqliteDialect,
  sql,
  type Transaction,
} from 'kysely';
import pg from 'pg';
import { type Change, type ChangeFeed, InProcessChangeFeed } from './changes.ts';
import { migrationProvider } from './migrations.ts';
import type { Database } from './schema.ts';

export type Dialect = 'sqlite' | 'postgres';
export type Tx = Transaction<Database>;

// SQLite runs DDL inside transactions, but Kysely's adapter says it does not, so its Migrator
// would apply each migration statement by statement: one that fails (or a process killed)
// halfway would leave a half-created schema that no later `migrate` can get past.
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}
class GatehouseSqliteDialect extends SqliteDialect {
  override createAdapter() {
    return new TransactionalDdlSqliteAdapter();
  }
}

/** A database problem that stops start-up; the message names the URL with its password hidden. */
export class StoreError extends Error {}

export interface StoreOptions {
  changes?: ChangeFeed;
  /** PostgreSQL pool size. */
  maxConnections?: number;
}

export class Store {
  private constructor(
    readonly db: Kysely<Database>,
    readonly dialect: Dialect,
    readonly url: string,
    readonly changes: ChangeFeed,
  ) {}

  /** Opens the database named by `url` (`sqlite:<file>` or `postgres://…`) and checks it answers. */
  static async open(url: string, options: StoreOptions = {}): Promise<Store> {
    const changes = options.changes ?? new InProcessChangeFeed();
    if (url.startsWith('sqlite:')) {
      const file = url.slice('sqlite:'.length);
      let database: SqliteDatabase.Database;
      try {
        mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
        database = new SqliteDatabase(file);
        // WAL lets readers run beside the writer; foreign keys are off by default in SQLite;
        // the busy timeout makes a second process wait for the write lock instead of failing.
        database.pragma('journal_mode = WAL');
        database.pragma('foreign_keys = ON');
        database.pragma('busy_timeout = 5000');
        database.pragma('synchronous = NORMAL');
      } catch (error) {
        throw new StoreError(`cannot open database ${url}: ${(error as Error).message}`);
      }
      const db = new Kysely<Database>({ dialect: new GatehouseSqliteDialect({ database }) });
      return new Store(db, 'sqlite', url, changes);
    }
    if (/^postgres(ql)?:\/\//.test(url)) {
      const pool = new pg.Pool({
        connectionString: url,
        max: options.maxConnections ?? 10,
        connectionTimeoutMillis: 5000,
      });
      // An idle client that loses its connection emits 'error' on the pool; without a listener
      // that would crash the process. The next query reconnects.
      pool.on('error', () => {});
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
      const store = new Store(db, 'postgres', url, changes);
      try {
        await sql`select 1`.execute(db);
      } catch (error) {
        await db.destroy().catch(() => {});
        throw new StoreError(
          `cannot connect to database ${redactDatabaseUrl(url)}: ${(error as Error).message || String(error)}`,
        );
      }
      return store;
    }
    throw new StoreError(
      `unsupported database URL ${redactDatabaseUrl(url)}: expected sqlite:<file> or postgres://…`,
    );
  }

  /** Applies every pending migration; throws StoreError naming the failing one. */
  async migrate(): Promise<void> {
    const migrator = new Migrator({ db: this.db, provider: migrationProvider });
    const { error, results } = await migrator.migrateToLatest();
    if (error) {
      const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
      throw new StoreError(
        `cannot migrate database ${redactDatabaseUrl(this.url)} (migration ${failed}): ${(error as Error).message ?? String(error)}`,
      );
    }
  }

  /**
   * Runs `fn` in one transaction. `changed()` records what the write touched; the changes are
   * announced only after the commit, so no cache ever sees a write that rolled back.
   */
  async write<T>(fn: (tx: Tx, changed: (change: Change) => void) => Promise<T>): Promise<T> {
    const recorded: Change[] = [];
    const result = await this.db.transaction().execute((tx) => fn(tx, (change) => recorded.push(change)));
    if (recorded.length > 0) await this.changes.publish(recorded);
    return result;
  }

  /** True when the database answers a trivial query (for /readyz). */
  async ping(): Promise<boolean> {
    try {
      await sql`select 1`.execute(this.db);
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.changes.close();
    await this.db.destroy();
  }
}

/** Hides the password in a database URL for messages and logs (any scheme, `@` in it, or `?password=`). */
export function redactDatabaseUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:)[^/?#]*@/i, '$1***@')
    .replace(/([?&]password=)[^&#]*/gi, '$1***');
}

/** Unique-key violations, whose codes differ between the two databases. */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}

/** `count(*)` is a string on PostgreSQL and a number on SQLite. */
export function toCount(value: string | number | bigint | null | undefined): number {
  return Number(value ?? 0);
}

export function nowIso(now: Date = new Date()): string {
  return now.toISOString();
}
