// `gatehouse keys rotate-master` (docs/deploy.md): the real command re-encrypts every signing key
// and every sealed identity provider secret under a new master key in one transaction, on SQLite
// (key in <data-dir>/master.key, which then holds the new key) and PostgreSQL (key in
// GATEHOUSE_MASTER_KEY). Afterwards the data opens with the new key only; a wrong old key or a bad
// new key file changes nothing; a node still running with the old key keeps serving from memory
// but refuses to write a signing key the others could not open.
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { decodeMasterKey, decrypt, type MasterKey, MasterKeyError } from '../../src/keys/master-key.ts';
import { identityProviderSecretBinding, openSecret, sealSecret } from '../../src/keys/sealed.ts';
import { killAllCli, runCli } from '../support/cli.ts';
import { createTestDatabase, databaseKinds, type TestDatabase, tempDir } from '../support/databases.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';

const GITHUB_SECRET = `github-client-secret-${randomBytes(8).toString('hex')}`;

describe.each(databaseKinds)('gatehouse keys rotate-master on %s', (kind) => {
  let database: TestDatabase;
  let work: { dir: string; cleanup(): void };
  let node: TestGateway;
  let oldKey: MasterKey;
  const newKeyHex = randomBytes(32).toString('hex');
  const newKey = decodeMasterKey(newKeyHex, 'test');
  let newKeyFile: string;
  let providerId: string;
  // PostgreSQL nodes share GATEHOUSE_MASTER_KEY; a SQLite installation uses its generated file.
  const oldKeyHex = randomBytes(32).toString('hex');
  const keyEnv = (hex: string): Record<string, string> =>
    kind === 'postgres' ? { GATEHOUSE_MASTER_KEY: hex } : {};

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    work = tempDir('gatehouse-rotate-master-');
    newKeyFile = path.join(work.dir, 'new.key');
    writeFileSync(newKeyFile, `${newKeyHex}\n`, { mode: 0o600 });
    // A running node: its first signing key, one rotation (two keys), a GitHub IdP with a secret.
    node = await startTestGateway({
      database,
      settings: kind === 'postgres' ? { masterKey: oldKeyHex } : {},
    });
    oldKey = decodeMasterKey(
      kind === 'postgres' ? oldKeyHex : readFileSync(path.join(database.dataDir, 'master.key'), 'utf8'),
      'old',
    );
    await node.gateway.keys.rotate();
    const accountId = node.gateway.account.accountId;
    const { secret } = await createApiToken(node.gateway.repos.apiTokens, {
      accountId,
      name: 'rotate-master',
      permissions: ['Access: Organizations, Identity Providers, and Groups Write'],
    });
    const created = await fetch(`${node.url}/client/v4/accounts/${accountId}/access/identity_providers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'GitHub',
        type: 'github',
        config: { client_id: 'gh-client', client_secret: GITHUB_SECRET },
      }),
    });
    expect(created.status).toBe(201);
    providerId = ((await created.json()) as { result: { id: string } }).result.id;
  });

  afterAll(async () => {
    await killAllCli();
    await node?.close();
    await database?.cleanup();
    work?.cleanup();
  });

  const encryptedRows = async () => ({
    signingKeys: await node.gateway.store.db
      .selectFrom('signing_keys')
      .select(['kid', 'private_key_encrypted'])
      .orderBy('kid')
      .execute(),
    providers: await node.gateway.store.db
      .selectFrom('identity_providers')
      .select(['id', 'client_secret_encrypted'])
      .where('client_secret_encrypted', 'is not', null)
      .execute(),
  });

  const gatehouse = (args: string[], env: Record<string, string>) =>
    runCli([...args, '--database-url', database.url, '--data-dir', database.dataDir, '--log-level', 'warn'], {
      cwd: work.dir,
      env,
      timeoutMs: 60_000,
    });
  const rotateMaster = (env: Record<string, string>, file = newKeyFile) =>
    gatehouse(['keys', 'rotate-master', '--new-key-file', file], env);

  it('changes nothing when the old key is wrong, the new key file is bad, or both keys are the same', async () => {
    const before = await encryptedRows();
    expect(before.signingKeys).toHaveLength(2);
    expect(before.providers).toHaveLength(1);

    const wrongOld = await rotateMaster({ GATEHOUSE_MASTER_KEY: randomBytes(32).toString('hex') });
    expect(wrongOld.code).toBe(1);
    expect(wrongOld.stderr).toMatch(/is not the key the data was encrypted with/);

    const badFile = path.join(work.dir, 'bad.key');
    writeFileSync(badFile, 'not a key\n');
    const bad = await rotateMaster(keyEnv(oldKeyHex), badFile);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/must be 32 bytes/);
    const missing = await rotateMaster(keyEnv(oldKeyHex), path.join(work.dir, 'absent.key'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read the new master key file/);

    const sameFile = path.join(work.dir, 'same.key');
    writeFileSync(sameFile, oldKey.key.toString('base64'));
    const same = await rotateMaster(keyEnv(oldKeyHex), sameFile);
    expect(same.code).toBe(1);
    expect(same.stderr).toMatch(/is the key in use/);

    // All or nothing: the signing keys open with the old key but the provider secret does not
    // (sealed under some other key), so the rotation fails half-way and rolls everything back.
    const foreign = sealSecret(
      decodeMasterKey(randomBytes(32).toString('hex'), 'foreign'),
      GITHUB_SECRET,
      identityProviderSecretBinding(providerId),
    );
    const setProviderSecret = (sealed: string) =>
      node.gateway.store.db
        .updateTable('identity_providers')
        .set({ client_secret_encrypted: sealed })
        .where('id', '=', providerId)
        .execute();
    await setProviderSecret(foreign);
    const halfway = await rotateMaster(keyEnv(oldKeyHex));
    expect(halfway.code).toBe(1);
    expect(halfway.stderr).toMatch(/does not open identity_providers\//);
    await setProviderSecret(before.providers[0]!.client_secret_encrypted!);

    expect(await encryptedRows()).toEqual(before);
    if (kind === 'sqlite') {
      expect(readFileSync(path.join(database.dataDir, 'master.key'), 'utf8').trim()).toBe(
        oldKey.key.toString('hex'),
      );
    }
  });

  it('re-encrypts every secret under the new key; the old key opens nothing afterwards', async () => {
    const before = await encryptedRows();
    const plaintexts = before.signingKeys.map((row) => decrypt(oldKey, row.private_key_encrypted, row.kid));

    const rotated = await rotateMaster(keyEnv(oldKeyHex));
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stderr).toMatch(/re-encrypted 2 signing key\(s\) and 1 identity provider secret\(s\)/);
    // No secret is printed.
    expect(rotated.stdout + rotated.stderr).not.toContain(newKeyHex);
    expect(rotated.stdout + rotated.stderr).not.toContain(GITHUB_SECRET);

    const after = await encryptedRows();
    expect(after.signingKeys.map((row) => row.kid)).toEqual(before.signingKeys.map((row) => row.kid));
    after.signingKeys.forEach((row, i) => {
      expect(row.private_key_encrypted).not.toBe(before.signingKeys[i]!.private_key_encrypted);
      expect(decrypt(newKey, row.private_key_encrypted, row.kid).equals(plaintexts[i]!)).toBe(true);
      expect(() => decrypt(oldKey, row.private_key_encrypted, row.kid)).toThrow(MasterKeyError);
    });
    const sealed = after.providers[0]!.client_secret_encrypted!;
    const binding = identityProviderSecretBinding(providerId);
    expect(openSecret(newKey, sealed, binding)).toBe(GITHUB_SECRET);
    expect(() => openSecret(oldKey, sealed, binding)).toThrow(MasterKeyError);
    if (kind === 'sqlite') {
      // The generated key file, where the next start looks, now holds the new key (still 0600).
      const file = path.join(database.dataDir, 'master.key');
      expect(readFileSync(file, 'utf8').trim()).toBe(newKeyHex);
      expect(statSync(file).mode & 0o777).toBe(0o600);
    }
  });

  it('a node still on the old key keeps signing from memory but refuses to rotate; the new key works', async () => {
    // The running node loaded its keys before the rotation: it still signs…
    expect(node.gateway.keys.signingKey().kid).toMatch(/^[0-9a-f]{64}$/);
    // …but cannot write a signing key the restarted nodes could not open.
    await expect(node.gateway.keys.rotate()).rejects.toThrow(MasterKeyError);
    expect((await encryptedRows()).signingKeys).toHaveLength(2);

    // The real command with the old key is refused; with the new key it runs.
    const withOld = await gatehouse(['keys', 'rotate'], {
      GATEHOUSE_MASTER_KEY: oldKey.key.toString('hex'),
    });
    expect(withOld.code).toBe(1);
    expect(withOld.stderr).toMatch(/master key/);
    const withNew = await gatehouse(['keys', 'rotate'], keyEnv(newKeyHex));
    expect(withNew.code, withNew.stderr).toBe(0);
    const keys = (await encryptedRows()).signingKeys;
    expect(keys).toHaveLength(3);
    for (const row of keys) expect(() => decrypt(newKey, row.private_key_encrypted, row.kid)).not.toThrow();
  });
});
