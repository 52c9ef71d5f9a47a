// Kysely's SQLite driver prepares every statement it runs (better-sqlite3 `prepare`: SQLite parses
// and plans the SQL each time), which was about a tenth of the CPU of an OIDC token request
// (bench/oidc). Kysely emits the same SQL text for the same query shape with values as bound
// parameters, so a prepared statement is kept per SQL text and reused.
import type SqliteDatabase from 'better-sqlite3';
import type { SqliteDatabase as KyselySqliteDatabase } from 'kysely';

/** Distinct SQL texts kept; beyond it the oldest is dropped (`in (…)` lists vary in length). */
const STATEMENT_CACHE_SIZE = 256;

export function withStatementCache(
  database: SqliteDatabase.Database,
  size: number = STATEMENT_CACHE_SIZE,
): KyselySqliteDatabase {
  const statements = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => database.close(),
    prepare(sql) {
      const cached = statements.get(sql);
      // A statement still being iterated (Kysely's streamQuery) cannot run again until it is
      // done; a second one is prepared for that caller. SQLite re-prepares a cached statement
      // itself when the schema changes (sqlite3_prepare_v2).
      if (cached) return cached.busy ? database.prepare(sql) : cached;
      const statement = database.prepare(sql);
      if (statements.size >= size) statements.delete(statements.keys().next().value!);
      statements.set(sql, statement);
      return statement;
    },
  };
}
