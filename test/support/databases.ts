// Databases for tests: a fresh SQLite file in a temp directory always, and a fresh PostgreSQL
// database per call when GATEHOUSE_TEST_DATABASE_URL is set, so test files run in parallel
// without sharing state. Each comes with its cleanup.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface TestDatabase {
  kind: 'sqlite' | 'postgres';
  url: string;
  /** A directory private to this database, usable as --data-dir. */
  dataDir: string;
  cleanup(): Promise<void>;
}

export const postgresServerUrl = process.env.GATEHOUSE_TEST_DATABASE_URL;

/** The database kinds to run a suite against: SQLite always, PostgreSQL when configured. */
export const databaseKinds: ('sqlite' | 'postgres')[] = postgresServerUrl
  ? ['sqlite', 'postgres']
  : ['sqlite'];

export function tempDir(prefix = 'gatehouse-test-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function createTestDatabase(kind: 'sqlite' | 'postgres'): Promise<TestDatabase> {
  const temp = tempDir();
  if (kind === 'sqlite') {
    return {
      kind,
      url: `sqlite:${path.join(temp.dir, 'gatehouse.db')}`,
      dataDir: temp.dir,
      cleanup: async () => temp.cleanup(),
    };
  }
  if (!postgresServerUrl) throw new Error('GATEHOUSE_TEST_DATABASE_URL is not set');
  const name = `gatehouse_t_${randomBytes(6).toString('hex')}`;
  await withAdmin((client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(postgresServerUrl);
  url.pathname = `/${name}`;
  return {
    kind,
    url: url.toString(),
    dataDir: temp.dir,
    cleanup: async () => {
      await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      temp.cleanup();
    },
  };
}

async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: postgresServerUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
