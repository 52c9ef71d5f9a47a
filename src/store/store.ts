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
import { type Change, type ChangeFeed, type FeedStatus, InProcessChangeFeed } from './changes.ts';
import { advisoryLockKey, type FeedLogger, PostgresChangeFeed } from './changes-postgres.ts';
import { migrationProvider } from './migrations.ts';
import type { Database } from './schema.ts';
import { withStatementCache } from './sqlite-statements.ts';

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
  /** Defaults to the in-process feed on SQLite and the LISTEN/NOTIFY feed on PostgreSQL. */
  changes?: ChangeFeed;
  /** Where the PostgreSQL feed reports losing and regaining the database. */
  log?: FeedLogger;
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
    if (url.startsWith('sqlite:')) {
      const changes = options.changes ?? new InProcessChangeFeed();
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
      const db = new Kysely<Database>({
        dialect: new GatehouseSqliteDialect({ database: withStatementCache(database) }),
      });
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
      // A client in use when its connection drops also emits 'error' (pg 8), besides failing its
      // query; nobody listens on a checked-out client, so without this a database lost in the
      // middle of a query would crash the process instead of failing that query.
      pool.on('connect', (client) => client.on('error', () => {}));
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
      const changes =
        options.changes ?? new PostgresChangeFeed({ url, ...(options.log && { log: options.log }) });
      const store = new Store(db, 'postgres', url, changes);
      try {
        await sql`select 1`.execute(db);
      } catch (error) {
        await db.destroy().catch(() => {});
        await changes.close().catch(() => {});
        throw new StoreError(
          `cannot connect to database ${redactDatabaseUrl(url)}: ${(error as Error).message || String(error)}`,
          { cause: error },
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
    const result = await this.db.transaction().execute(async (tx) => {
      const value = await fn(tx, (change) => recorded.push(change));
      if (recorded.length > 0) await this.changes.record?.(tx, recorded);
      return value;
    });
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

  /**
   * Ready to serve as a node: the database answers and, on PostgreSQL, this node hears the
   * others' changes. When not, `reason` says why (for /readyz); the proxy keeps serving from
   * its last snapshot meanwhile (fail-static, docs/deploy.md).
   */
  async health(): Promise<FeedStatus> {
    if (!(await this.ping())) {
      return {
        ok: false,
        reason: 'database unreachable: serving from the last snapshot; writes are refused',
      };
    }
    return this.changes.status?.() ?? { ok: true };
  }

  /**
   * Runs `fn` while holding a lock named `name` across every node (a PostgreSQL session
   * advisory lock on a connection of its own, released by the server if that connection dies).
   * SQLite serves one node, so there it just runs `fn`.
   */
  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (this.dialect !== 'postgres') return fn();
    const key = advisoryLockKey(name);
    return this.db.connection().execute(async (connection) => {
      await sql`select pg_advisory_lock(${key}::bigint)`.execute(connection);
      try {
        return await fn();
      } finally {
        await sql`select pg_advisory_unlock(${key}::bigint)`.execute(connection).catch(() => {});
      }
    });
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

/**
 * True when `error` means the database cannot be reached right now (connection refused, lost,
 * timed out, or the server shutting down or starting up), as opposed to a bad query: callers
 * answer 503 and retry later instead of 500.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 4; depth++) {
    const { code, message } = current as { code?: unknown; message?: unknown };
    if (typeof code === 'string') {
      // Class 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
      if (/^(08|57P0[123])/.test(code)) return true;
      if (
        [
          'ECONNREFUSED',
          'ECONNRESET',
          'ETIMEDOUT',
          'EHOSTUNREACH',
          'ENETUNREACH',
          'EPIPE',
          'ENOTFOUND',
          'EAI_AGAIN',
        ].includes(code)
      ) {
        return true;
      }
    }
    if (
      typeof message === 'string' &&
      /Connection terminated|timeout exceeded when trying to connect|not queryable|the database system is (shutting down|starting up)/i.test(
        message,
      )
    ) {
      return true;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return false;
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
