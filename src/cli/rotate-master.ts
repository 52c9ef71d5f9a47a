// `gatehouse keys rotate-master --new-key-file <file>`: re-encrypts everything encrypted with the
// master key under a new one (src/keys/master-key-rotation.ts). The old key is the one the
// settings name (GATEHOUSE_MASTER_KEY, else <data-dir>/master.key); the new one is read from a
// file, never from the command line, where other users could read it in the process list.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Settings } from '../config/settings.ts';
import { openStore } from '../gateway.ts';
import { decodeMasterKey, loadMasterKey, MasterKeyError } from '../keys/master-key.ts';
import { rotateMasterKey } from '../keys/master-key-rotation.ts';

export async function rotateMaster(settings: Settings, newKeyFile: string): Promise<void> {
  let text: string;
  try {
    text = readFileSync(newKeyFile, 'utf8');
  } catch (error) {
    throw new MasterKeyError(
      `cannot read the new master key file ${newKeyFile}: ${(error as Error).message}`,
    );
  }
  const to = decodeMasterKey(text, newKeyFile);
  const { store, repos, account } = await openStore(settings);
  try {
    const from = loadMasterKey({
      fromSetting: settings.masterKey,
      dataDir: settings.dataDir,
      mayGenerate: false,
      encryptedKeyCount: await repos.signingKeys.count(account.accountId),
    });
    const done = await rotateMasterKey(store, account.accountId, from, to);
    // The generated key file is where the next start looks: it gets the new key, atomically
    // (a crash leaves the old file whole, and the new key is still in --new-key-file).
    if (!settings.masterKey) {
      writeFileSync(`${from.source}.new`, `${to.key.toString('hex')}\n`, { mode: 0o600 });
      renameSync(`${from.source}.new`, from.source);
    }
    process.stderr.write(
      `re-encrypted ${done.signingKeys} signing key(s) and ${done.identityProviderSecrets} identity provider ` +
        `secret(s) with the new master key; ${
          settings.masterKey
            ? 'set GATEHOUSE_MASTER_KEY to it on every node'
            : `${from.source} now holds it; give it to every node`
        } and restart them (docs/deploy.md)\n`,
    );
  } finally {
    await store.close();
  }
}
