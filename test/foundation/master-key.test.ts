// The master key that encrypts signing keys at rest (ARCHITECTURE.md decision 8): generated
// once with mode 0600, never regenerated over existing encrypted keys, and a wrong key refuses
// to start instead of minting with something else.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.ts';
import { openGateway } from '../../src/gateway.ts';
import { MasterKeyError } from '../../src/keys/master-key.ts';
import { createLogger } from '../../src/logging.ts';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../support/databases.ts';

const logger = createLogger('silent');
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function freshDatabase(kind: 'sqlite' | 'postgres'): Promise<TestDatabase> {
  const database = await createTestDatabase(kind);
  cleanups.push(() => database.cleanup());
  return database;
}

function settingsFor(database: TestDatabase, extra: Record<string, string> = {}) {
  const env: Record<string, string> = {};
  if (extra.masterKey) env.GATEHOUSE_MASTER_KEY = extra.masterKey;
  return loadSettings({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'silent' }, env);
}

/** Opens the gateway once (creating the first signing key) and closes it; returns its kid. */
async function openAndClose(database: TestDatabase, masterKey?: string): Promise<string> {
  const gateway = await openGateway(settingsFor(database, masterKey ? { masterKey } : {}), logger);
  try {
    return gateway.keys.signingKey().kid;
  } finally {
    await gateway.close();
  }
}

async function refusal(database: TestDatabase, masterKey?: string): Promise<MasterKeyError> {
  try {
    const gateway = await openGateway(settingsFor(database, masterKey ? { masterKey } : {}), logger);
    await gateway.close();
  } catch (error) {
    expect(error).toBeInstanceOf(MasterKeyError);
    return error as MasterKeyError;
  }
  throw new Error('expected the gateway to refuse to open');
}

describe.each(databaseKinds)('master key on %s', (kind) => {
  it('is generated on first start as <data-dir>/master.key with mode 0600', async () => {
    const database = await freshDatabase(kind);
    const kid = await openAndClose(database);
    const file = path.join(database.dataDir, 'master.key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
    // The same key opens the same signing key on the next start.
    expect(await openAndClose(database)).toBe(kid);
  });

  it('missing for existing encrypted keys: refuses, says which file and variable and why, creates nothing', async () => {
    const database = await freshDatabase(kind);
    await openAndClose(database);
    const file = path.join(database.dataDir, 'master.key');
    renameSync(file, `${file}.bak`);

    const error = await refusal(database);
    expect(error.message).toContain(file);
    expect(error.message).toContain('GATEHOUSE_MASTER_KEY');
    expect(error.message).toContain('1 signing key(s) encrypted');
    expect(error.message).toContain('never generates a new master key over existing data');
    expect(existsSync(file)).toBe(false);

    // Putting the file back is the fix the message suggests.
    renameSync(`${file}.bak`, file);
    await openAndClose(database);
  });

  it('wrong key from GATEHOUSE_MASTER_KEY: refuses and says so', async () => {
    const database = await freshDatabase(kind);
    await openAndClose(database);
    const other = randomBytes(32).toString('hex');
    const error = await refusal(database, other);
    expect(error.message).toContain('GATEHOUSE_MASTER_KEY');
    expect(error.message).toContain('not the key the data was encrypted with');
    expect(error.message).not.toContain(other);
  });

  it('wrong key in master.key: refuses, naming the file', async () => {
    const database = await freshDatabase(kind);
    await openAndClose(database);
    const file = path.join(database.dataDir, 'master.key');
    writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const error = await refusal(database);
    expect(error.message).toContain(file);
    expect(error.message).toContain('does not decrypt');
  });

  it('from GATEHOUSE_MASTER_KEY: no file is generated, and later starts need the variable', async () => {
    const database = await freshDatabase(kind);
    const key = randomBytes(32).toString('base64');
    const kid = await openAndClose(database, key);
    const file = path.join(database.dataDir, 'master.key');
    expect(existsSync(file)).toBe(false);
    expect(await openAndClose(database, key)).toBe(kid);
    // Without the variable there is no key at all, and none is invented.
    const error = await refusal(database);
    expect(error.message).toContain('GATEHOUSE_MASTER_KEY is not set');
    expect(existsSync(file)).toBe(false);
  });
});

describe('master key file', () => {
  it('with loose permissions is tightened to 0600 when read', async () => {
    const database = await freshDatabase('sqlite');
    await openAndClose(database);
    const file = path.join(database.dataDir, 'master.key');
    chmodSync(file, 0o644);
    await openAndClose(database);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('signing keys are stored encrypted, not as a usable private key', async () => {
    const database = await freshDatabase('sqlite');
    const gateway = await openGateway(settingsFor(database), logger);
    try {
      const [row] = await gateway.repos.signingKeys.list(gateway.account.accountId);
      const stored = Buffer.from(row!.private_key_encrypted, 'base64');
      // A plaintext PKCS#8 RSA key holds the modulus; the ciphertext must not.
      const modulus = Buffer.from((JSON.parse(row!.public_jwk) as { n: string }).n, 'base64url');
      expect(modulus.length).toBe(256);
      expect(stored.length).toBeGreaterThan(1000);
      expect(stored.includes(modulus.subarray(0, 32))).toBe(false);
      expect(row!.private_key_encrypted).not.toContain('PRIVATE KEY');
    } finally {
      await gateway.close();
    }
  });
});
