// The master key encrypts signing keys at rest (ARCHITECTURE.md decision 8). It comes from
// GATEHOUSE_MASTER_KEY or from <data-dir>/master.key, which is generated (mode 0600) only when
// the database holds no encrypted keys yet: a new key over existing data would lock them away.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export class MasterKeyError extends Error {}

export interface MasterKey {
  key: Buffer;
  /** Where the key came from, for messages: the variable's name or the file's path. */
  source: string;
}

export function decodeMasterKey(text: string, source: string): MasterKey {
  const trimmed = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(trimmed)
    ? Buffer.from(trimmed, 'hex')
    : Buffer.from(trimmed, 'base64');
  if (key.length !== 32) {
    throw new MasterKeyError(`the master key in ${source} must be 32 bytes (64 hex characters or base64)`);
  }
  return { key, source };
}

/**
 * Finds the master key, or creates the file when `mayGenerate` (no encrypted data exists yet).
 * `fromSetting` is the value of GATEHOUSE_MASTER_KEY, which wins over the file.
 */
export function loadMasterKey(options: {
  fromSetting?: string | undefined;
  dataDir: string;
  mayGenerate: boolean;
  encryptedKeyCount: number;
}): MasterKey & { generated: boolean } {
  if (options.fromSetting) {
    return { ...decodeMasterKey(options.fromSetting, 'GATEHOUSE_MASTER_KEY'), generated: false };
  }
  const file = path.resolve(options.dataDir, 'master.key');
  let text: string | null = null;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new MasterKeyError(`cannot read the master key file ${file}: ${(error as Error).message}`);
    }
  }
  if (text !== null) {
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
    return { ...decodeMasterKey(text, file), generated: false };
  }
  if (!options.mayGenerate) {
    throw new MasterKeyError(
      `the database holds ${options.encryptedKeyCount} signing key(s) encrypted with a master key, but ` +
        `GATEHOUSE_MASTER_KEY is not set and ${file} does not exist. Restore the master key that was used ` +
        '(set GATEHOUSE_MASTER_KEY or put the file back); Gatehouse never generates a new master key over existing data.',
    );
  }
  mkdirSync(path.dirname(file), { recursive: true });
  const key = randomBytes(32);
  // 'wx' refuses to overwrite a file another process created in the meantime.
  writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  return { key, source: file, generated: true };
}

/** AES-256-GCM; the additional data binds a ciphertext to its row (e.g. the kid). */
export function encrypt(master: MasterKey, plaintext: Buffer, additionalData: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', master.key, iv);
  cipher.setAAD(Buffer.from(additionalData));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
}

export function decrypt(master: MasterKey, encoded: string, additionalData: string): Buffer {
  const data = Buffer.from(encoded, 'base64');
  try {
    const decipher = createDecipheriv('aes-256-gcm', master.key, data.subarray(0, 12));
    decipher.setAAD(Buffer.from(additionalData));
    decipher.setAuthTag(data.subarray(12, 28));
    return Buffer.concat([decipher.update(data.subarray(28)), decipher.final()]);
  } catch {
    throw new MasterKeyError(
      `the master key from ${master.source} does not decrypt signing key ${additionalData}: it is not the key ` +
        'the data was encrypted with. Set GATEHOUSE_MASTER_KEY (or restore master.key) to the original key.',
    );
  }
}
