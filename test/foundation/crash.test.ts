// A process killed with SIGKILL in the middle of a multi-row write leaves no partial state:
// the child (fixtures/half-write.ts) replaces the ingress rules row by row inside store.write,
// reports how many of its rows it can see, and is killed before it commits.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { IngressRule } from '../../src/config/settings.ts';
import { AccountRepository } from '../../src/store/repositories/accounts.ts';
import { IngressRepository } from '../../src/store/repositories/ingress.ts';
import { Store } from '../../src/store/store.ts';
import { childEnv, repoRoot } from '../support/cli.ts';
import { createTestDatabase, databaseKinds } from '../support/databases.ts';

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'half-write.ts');
const children = new Set<ChildProcess>();

afterEach(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child.once('close', resolve));
      child.kill('SIGKILL');
      await gone;
    }
  }
  children.clear();
});

/** Starts the fixture and resolves with its `halfway N` count once it is mid-transaction. */
function startHalfWrite(url: string, accountId: string, rows: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, url, accountId, String(rows)], {
    cwd: repoRoot,
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.once('close', (code, signal) => resolve(signal ?? code)),
  );
  const halfway = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "halfway" within 20 s; stderr:\n${stderr}`)), 20_000);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const match = /^halfway (\d+)$/m.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`the writer exited (${how}) before "halfway"; stderr:\n${stderr}`));
    });
  });
  return { child, halfway, exited };
}

describe.each(databaseKinds)('SIGKILL during a write on %s', (kind) => {
  it('leaves exactly the state before the write, and the database usable', async () => {
    const database = await createTestDatabase(kind);
    const before: IngressRule[] = [
      { hostname: 'wiki.example.com', service: 'http://127.0.0.1:3000' },
      { hostname: 'admin.example.com', path: '^/ops/', service: 'http://127.0.0.1:3001' },
      { service: 'http_status:404' },
    ];
    let store = await Store.open(database.url);
    try {
      await store.migrate();
      const { accountId } = await new AccountRepository(store).ensure({
        authDomain: 'http://127.0.0.1:1',
        keyRotationIntervalDays: 42,
      });
      await new IngressRepository(store).replace(accountId, before);

      const rows = 120;
      const writer = startHalfWrite(database.url, accountId, rows);
      // Inside its transaction the writer sees its own rows: the old ones are gone, the new ones there.
      expect(await writer.halfway).toBe(rows);
      // Meanwhile another connection still reads the committed state.
      expect(await new IngressRepository(store).get(accountId)).toEqual(before);

      writer.child.kill('SIGKILL');
      expect(await writer.exited).toBe('SIGKILL');

      await store.close();
      store = await Store.open(database.url);
      const ingress = new IngressRepository(store);
      expect(await ingress.get(accountId)).toEqual(before);
      const stray = await store.db
        .selectFrom('ingress_rules')
        .select('rule')
        .where('rule', 'like', '%half-%')
        .execute();
      expect(stray).toEqual([]);

      // The dead writer's locks are gone: a new write commits (SQLite's busy timeout or a
      // PostgreSQL row lock would otherwise make this wait and fail).
      const after: IngressRule[] = [{ service: 'http_status:503' }];
      await ingress.replace(accountId, after);
      expect(await ingress.get(accountId)).toEqual(after);
    } finally {
      await store.close();
      await database.cleanup();
    }
  });
});
